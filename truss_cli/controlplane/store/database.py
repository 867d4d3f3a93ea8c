"""Opening the database: which driver a URL means, SQLite's safety settings, and migrations.

SQLite (the default, a file under the data dir) runs in WAL mode so readers never wait for a
writer, with foreign keys on (they are off by default) and synchronous=FULL so a committed
transaction survives a power cut, not only a killed process. Writers start with BEGIN
IMMEDIATE: a deferred transaction that reads and then writes can fail at once with "database
is locked" when another writer committed in between, whatever the busy timeout says.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError

from truss_cli.controlplane.store.errors import NewerDatabase, StoreError

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
SQLITE_FILE_NAME = "controlplane.db"
# How long a writer waits for another writer's lock before giving up (SQLite only).
BUSY_TIMEOUT_MS = 30_000
# Any constant; it names the lock that serialises two control planes migrating one PostgreSQL.
_PG_MIGRATION_LOCK = 0x7472757373  # "truss"
_WRITE_OPTION = "truss_write"


def database_url(data_dir: Path, url: str | None = None) -> sa.URL:
    """The URL to connect to: `url` when given (postgresql://... means psycopg 3), else SQLite
    under `data_dir`."""
    if not url:
        return sa.URL.create("sqlite+pysqlite", database=str(Path(data_dir) / SQLITE_FILE_NAME))
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError as exc:
        raise StoreError(f"not a database URL: {url!r}", hint="use postgresql://USER@HOST/DB or sqlite:///PATH") from exc
    backend = parsed.get_backend_name()
    if backend in ("postgresql", "postgres"):
        # Users write what psql and libpq accept; psycopg 3 is the one driver we ship.
        return parsed.set(drivername="postgresql+psycopg")
    if backend == "sqlite":
        return parsed
    raise StoreError(f"unsupported database {backend!r} in {parsed.render_as_string(hide_password=True)}",
                     hint="use postgresql://... or sqlite:///PATH")


def create_engine(url: sa.URL) -> sa.Engine:
    if url.get_backend_name() != "sqlite":
        # pool_pre_ping: a PostgreSQL restart must not cost the control plane its next request.
        return sa.create_engine(url, pool_pre_ping=True)
    if url.database:
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url, connect_args={"check_same_thread": False})

    @sa.event.listens_for(engine, "connect")
    def _configure(dbapi_connection: Any, _record: Any) -> None:
        # Let us emit BEGIN ourselves (pysqlite's own transaction handling defers it).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _begin(connection: sa.Connection) -> None:
        writing = connection.get_execution_options().get(_WRITE_OPTION, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if writing else "BEGIN")

    return engine


@contextmanager
def write_transaction(engine: sa.Engine) -> Iterator[sa.Connection]:
    """One transaction that will write: committed when the block ends, rolled back on error."""
    with engine.connect() as connection:
        connection.execution_options(**{_WRITE_OPTION: True})
        with connection.begin():
            yield connection


@contextmanager
def read_transaction(engine: sa.Engine) -> Iterator[sa.Connection]:
    """One consistent snapshot to read from."""
    with engine.connect() as connection, connection.begin():
        yield connection


def _alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    assert head is not None
    return head


def migrate(engine: sa.Engine) -> str:
    """Bring the schema to this package's head revision, in one transaction; returns it.

    Two control planes opening one database at once take turns (a write lock on SQLite, an
    advisory lock on PostgreSQL), so neither sees the other's half-made schema. A database at
    a revision this package does not know was written by a newer truss-cli: refuse it.
    """
    config = _alembic_config()
    scripts = ScriptDirectory.from_config(config)
    with write_transaction(engine) as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(sa.select(sa.func.pg_advisory_xact_lock(_PG_MIGRATION_LOCK)))
        current = MigrationContext.configure(connection).get_current_revision()
        if current is not None:
            try:
                scripts.get_revision(current)
            except CommandError as exc:
                raise NewerDatabase(
                    f"the database is at schema revision {current!r}, which this truss-cli does not know",
                    hint="it was written by a newer truss-cli; upgrade truss-cli to use it",
                ) from exc
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
    return head_revision()
