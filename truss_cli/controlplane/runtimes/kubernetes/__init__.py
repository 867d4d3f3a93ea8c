"""The Kubernetes runtime's parts: the per-deployment objects (`objects.py`), the control
plane's own manifests (`install_manifests.py`) and the API client wrapper (`api.py`).
The runtime that joins them comes next (docs/kubernetes.md)."""
