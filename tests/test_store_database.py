"""Opening the store: migrations on open, the schema they make, SQLite's settings, URLs."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from postgres_support import shared_server
from store_support import backend, database_url, store  # noqa: F401 (fixtures)
from truss_cli.controlplane.store import NewerDatabase, Store, StoreError
from truss_cli.controlplane.store.database import MIGRATIONS_DIR, database_url as resolve_url, head_revision
from truss_cli.controlplane.store.schema import metadata


def test_open_creates_every_table_at_the_head_revision(store: Store):
    tables = set(sa.inspect(store.engine).get_table_names())
    assert {"models", "deployments", "replicas", "builds", "api_keys", "secrets"} <= tables
    with store.engine.connect() as db:
        assert MigrationContext.configure(db).get_current_revision() == head_revision()


def test_the_migrations_make_exactly_the_tables_the_queries_use(store: Store):
    # A column added to schema.py without a migration would fail here, not at a user's site.
    with store.engine.connect() as db:
        diff = compare_metadata(MigrationContext.configure(db, opts={"compare_type": True}), metadata)
    assert diff == []


def test_reopening_keeps_the_rows_and_migrates_nothing_twice(tmp_path: Path, database_url: str | None):
    with Store.open(tmp_path / "data", database_url) as first:
        first.models.create("hello")
    with Store.open(tmp_path / "data", database_url) as second:
        assert [m.name for m in second.models.list()] == ["hello"]


def test_a_database_from_a_newer_truss_cli_is_refused(tmp_path: Path, database_url: str | None):
    with Store.open(tmp_path / "data", database_url) as opened:
        with opened.engine.begin() as db:
            db.execute(sa.text("UPDATE alembic_version SET version_num = '9999_future'"))
    with pytest.raises(NewerDatabase) as caught:
        Store.open(tmp_path / "data", database_url)
    assert "9999_future" in caught.value.message
    assert "upgrade truss-cli" in (caught.value.hint or "")


def test_sqlite_is_a_wal_file_in_the_data_dir_with_foreign_keys_enforced(tmp_path: Path):
    with Store.open(tmp_path / "data") as opened:
        model = opened.models.create("hello")
        deployment = opened.deployments.create(model.id, config={})
        opened.replicas.record(deployment.id, "process", {"url": "http://127.0.0.1:1"})
        # A row pointing at a deployment that does not exist is refused, not stored.
        with pytest.raises(StoreError):
            opened.replicas.record("nosuchid", "process", {})
        opened.models.delete(model.id)
        # Deleting the model took its deployments and replicas with it.
        assert opened.deployments.list() == []
        assert opened.replicas.list() == []
    database = tmp_path / "data" / "controlplane.db"
    assert sqlite3.connect(database).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_urls_users_write_map_to_the_driver_we_ship(tmp_path: Path):
    assert resolve_url(tmp_path).drivername == "sqlite+pysqlite"
    assert resolve_url(tmp_path).database == str(tmp_path / "controlplane.db")
    assert resolve_url(tmp_path, "postgresql://u:pw@db.example/truss").drivername == "postgresql+psycopg"
    assert resolve_url(tmp_path, "postgres://u@db.example/truss").drivername == "postgresql+psycopg"
    with pytest.raises(StoreError, match="unsupported database 'mysql'"):
        resolve_url(tmp_path, "mysql://u@h/db")


def test_the_database_line_for_status_shows_no_password(tmp_path: Path):
    # The test server trusts socket connections, so any password gets in; it must not show.
    url = shared_server().create_database().replace("postgres@", "postgres:hunter2@")
    with Store.open(tmp_path / "data", url) as opened:
        assert "hunter2" not in opened.database and "hunter2" not in repr(opened)
        assert opened.database.startswith("postgresql+psycopg://postgres:***@")


def test_migrations_ship_inside_the_package():
    # hatch packages everything under truss_cli/; the runtime needs env.py and the versions.
    assert (MIGRATIONS_DIR / "env.py").is_file()
    assert list((MIGRATIONS_DIR / "versions").glob("0001_*.py"))
