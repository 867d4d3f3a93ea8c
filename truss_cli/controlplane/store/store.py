"""The control plane's state in one object: the database tables, the secrets key, the blobs.

    store = Store.open(data_dir)                          # SQLite under data_dir
    store = Store.open(data_dir, "postgresql://u@h/db")   # PostgreSQL (blobs stay on disk)

Opening applies any pending migration. Every method is one transaction and returns frozen
records, so the store is safe to share between threads (the API's and the workers').
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from truss_cli.controlplane.store.api_keys import ApiKeys
from truss_cli.controlplane.store.autoscaling import AutoscalingSettingsStore
from truss_cli.controlplane.store.blobs import BlobStore
from truss_cli.controlplane.store.builds import Builds
from truss_cli.controlplane.store.database import create_engine, database_url, migrate
from truss_cli.controlplane.store.deployments import Deployments
from truss_cli.controlplane.store.dev_syncs import DevSyncs
from truss_cli.controlplane.store.environments import Environments
from truss_cli.controlplane.store.promotions import Promotions
from truss_cli.controlplane.store.models import Models
from truss_cli.controlplane.store.patch_points import PatchPoints
from truss_cli.controlplane.store.replicas import Replicas
from truss_cli.controlplane.store.secret_store import KEY_FILE_NAME, Secrets, load_or_create_key
from truss_cli.controlplane.store.sessions import DashboardSessions
from truss_cli.controlplane.store.usage import Usage

BLOBS_DIR_NAME = "blobs"


class Store:
    def __init__(self, engine: sa.Engine, data_dir: Path, secrets_key: bytes):
        self.engine = engine
        self.data_dir = data_dir
        self.models = Models(engine)
        self.deployments = Deployments(engine)
        self.environments = Environments(engine)
        self.promotions = Promotions(engine)
        self.patch_points = PatchPoints(engine)
        self.dev_syncs = DevSyncs(engine)  # issue 12: the Development tab's last syncs
        self.replicas = Replicas(engine)
        self.builds = Builds(engine)
        self.api_keys = ApiKeys(engine)
        self.secrets = Secrets(engine, secrets_key)
        self.dashboard_sessions = DashboardSessions(engine)  # issue 12
        self.usage = Usage(engine)
        self.autoscaling = AutoscalingSettingsStore(engine)  # issue 11, task B
        self.blobs = BlobStore(data_dir / BLOBS_DIR_NAME)

    @classmethod
    def open(cls, data_dir: Path, database_url_text: str | None = None, *, secrets_key_file: Path | None = None) -> "Store":
        """Open (creating and migrating as needed) the store under `data_dir`.

        `database_url_text`: None for SQLite in the data dir, or a postgresql:// URL.
        `secrets_key_file`: defaults to `<data_dir>/secrets.key`.
        """
        data_dir = Path(data_dir)
        data_dir.mkdir(parents=True, exist_ok=True)
        key = load_or_create_key(secrets_key_file or data_dir / KEY_FILE_NAME)
        engine = create_engine(database_url(data_dir, database_url_text))
        try:
            migrate(engine)
        except BaseException:
            engine.dispose()
            raise
        return cls(engine, data_dir, key)

    @property
    def database(self) -> str:
        """Where the rows live, safe to print (`truss server status`): the password is masked."""
        return self.engine.url.render_as_string(hide_password=True)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({self.database!r}, data_dir={str(self.data_dir)!r})"
