"""The model server: what runs inside every replica (a local process or a container image).

Started as `python -m truss_cli.server MODEL_DIR --host H --port P`. It imports only what a
replica needs (FastAPI, uvicorn, pydantic, PyYAML, msgpack); never the CLI's dependencies.
This package's `__init__` stays import-free so that importing it costs nothing.
"""
