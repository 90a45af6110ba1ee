"""Deployments: environments, projects, services, deployments and their scheduling."""
