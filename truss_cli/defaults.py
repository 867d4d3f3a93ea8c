"""Where a local model server listens unless told otherwise, shared by `truss run` (which
starts one) and `truss predict` (which calls one), so the two always agree."""

from __future__ import annotations

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
DEFAULT_URL = f"http://{DEFAULT_HOST}:{DEFAULT_PORT}"
