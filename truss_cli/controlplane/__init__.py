"""The remote: a self-hosted control plane that builds, runs and serves models (docs/architecture.md)."""
