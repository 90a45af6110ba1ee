"""What every DeployForge service shares, and nothing service-specific."""
