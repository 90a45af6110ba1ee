"""DeployForge: a self-hosted deployment control plane."""
