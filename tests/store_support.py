"""Opening a Store on each backend the store tests run against: SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest

from postgres_support import shared_server
from truss_cli.controlplane.store import Store

BACKENDS = ["sqlite", "postgresql"]


def database_url_for(backend: str) -> str | None:
    """None (SQLite under the data dir) or a fresh PostgreSQL database's URL."""
    return None if backend == "sqlite" else shared_server().create_database()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def database_url(backend: str) -> str | None:
    return database_url_for(backend)


@pytest.fixture
def store(tmp_path: Path, database_url: str | None):
    with Store.open(tmp_path / "data", database_url) as opened:
        yield opened
