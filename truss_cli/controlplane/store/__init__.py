"""The control plane's state: models, deployments, replicas, builds, API keys, secrets (one
database, SQLite or PostgreSQL, migrated on open) and content-addressed archives on disk."""

from truss_cli.controlplane.store.blobs import BlobStore, BlobWriter, DigestMismatch, TooLarge
from truss_cli.controlplane.store.errors import Conflict, NewerDatabase, NotFound, StoreError
from truss_cli.controlplane.store.records import (
    ApiKey, Build, Deployment, Model, NewApiKey, Removed, Replica, SecretInfo, UsageAccrual, UsageTotal,
)
from truss_cli.controlplane.store.secret_store import SecretValue
from truss_cli.controlplane.store.store import Store

__all__ = [
    "ApiKey", "BlobStore", "BlobWriter", "Build", "Conflict", "Deployment", "DigestMismatch", "Model",
    "NewApiKey", "NewerDatabase", "NotFound", "Removed", "Replica", "SecretInfo", "SecretValue", "Store",
    "StoreError", "TooLarge", "UsageAccrual", "UsageTotal",
]
