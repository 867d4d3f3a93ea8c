"""Where a control plane's replicas run: one Runtime protocol (`base.py`), local processes
(`process.py`) and Docker containers (`docker.py`), and the choice between them (`select.py`)."""
