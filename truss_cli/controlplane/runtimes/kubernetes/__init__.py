"""The Kubernetes runtime's parts: the runtime itself (`runtime.py`, chosen by `selection.py`),
the objects each deployment becomes (`objects.py`, with `quantities.py` for its resources),
the manifests that run the control plane itself in a cluster (`install_manifests.py`), and
the API client wrapper (`api.py`). docs/kubernetes.md says what each does."""
