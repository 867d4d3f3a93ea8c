"""The control plane: the remote server that builds, runs and serves models (docs/architecture.md)."""
