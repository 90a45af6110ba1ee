"""DeployForge's bounded contexts, one package each."""
