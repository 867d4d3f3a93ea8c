"""The Kubernetes runtime's parts: the objects each deployment becomes (`objects.py`, with
`quantities.py` for its resources), the manifests that run the control plane itself in a
cluster (`install_manifests.py`), and the API client wrapper (`api.py`). The runtime that maps
the Runtime protocol onto them comes next (docs/kubernetes.md)."""
