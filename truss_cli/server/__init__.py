"""The model server: what runs inside every replica (a local process or a container image).

Started as `python -m truss_cli.server MODEL_DIR --replica-config PATH --host H --port P`. It
imports only what a replica needs (uvicorn, Starlette, msgpack and the standard library), never
the CLI's dependencies, and never pydantic or FastAPI: those are the model's, at whichever
version its requirements pin.
This package's `__init__` stays import-free so that importing it costs nothing.
"""
