"""The dashboard's session rows on SQLite and PostgreSQL: found by the cookie's token only while
unexpired and while the key that signed in is live; sign-out deletes; no token is stored."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from store_support import backend, database_url, store  # noqa: F401 (fixtures)
from truss_cli.controlplane.store import schema


def test_a_session_opens_with_its_token_and_carries_its_key(store):
    key = store.api_keys.create(name="me").key
    made = store.dashboard_sessions.create(key, timedelta(hours=12))
    found = store.dashboard_sessions.find(made.token)
    assert found is not None
    session, signed_in = found
    assert session.id == made.session.id and session.csrf_token == made.session.csrf_token
    assert signed_in.id == key.id and signed_in.is_admin
    assert store.dashboard_sessions.find(made.token + "x") is None
    assert store.dashboard_sessions.find("") is None


def test_the_token_itself_is_never_stored(store):
    made = store.dashboard_sessions.create(store.api_keys.create().key, timedelta(hours=1))
    with store.engine.connect() as db:
        rows = [tuple(map(str, row)) for row in db.execute(sa.select(schema.dashboard_sessions))]
    assert rows and not any(made.token in value for row in rows for value in row)


def test_an_expired_session_is_refused_and_swept(store):
    made = store.dashboard_sessions.create(store.api_keys.create().key, timedelta(seconds=-1))
    assert store.dashboard_sessions.find(made.token) is None
    assert store.dashboard_sessions.delete_expired() == 1


def test_sign_out_deletes_the_row(store):
    made = store.dashboard_sessions.create(store.api_keys.create().key, timedelta(hours=1))
    assert store.dashboard_sessions.delete(made.token)
    assert store.dashboard_sessions.find(made.token) is None
    assert not store.dashboard_sessions.delete(made.token)


def test_revoking_the_key_ends_its_sessions_only(store):
    revoked, kept = store.api_keys.create().key, store.api_keys.create().key
    ended = store.dashboard_sessions.create(revoked, timedelta(hours=1))
    other = store.dashboard_sessions.create(kept, timedelta(hours=1))
    store.api_keys.revoke(revoked.id)
    assert store.dashboard_sessions.find(ended.token) is None
    assert store.dashboard_sessions.find(other.token) is not None


def test_deleting_the_key_row_deletes_its_sessions(store):
    key = store.api_keys.create().key
    store.dashboard_sessions.create(key, timedelta(hours=1))
    with store.engine.begin() as db:
        db.execute(schema.api_keys.delete().where(schema.api_keys.c.id == key.id))
        assert db.execute(sa.select(sa.func.count()).select_from(schema.dashboard_sessions)).scalar() == 0


def test_using_a_session_marks_its_key_used_at_most_once_a_minute(store):
    key = store.api_keys.create(name="browser").key  # made, never used: no last_used_at
    made = store.dashboard_sessions.create(key, timedelta(hours=1))

    def last_used():
        return next(k for k in store.api_keys.list() if k.id == key.id).last_used_at

    assert last_used() is None
    store.dashboard_sessions.find(made.token)
    first = last_used()
    assert first is not None  # `truss api-keys list` now shows the browser's use
    store.dashboard_sessions.find(made.token)
    assert last_used() == first  # within the minute: no second write
    with store.engine.begin() as db:  # as if that use were two minutes ago
        db.execute(schema.api_keys.update().where(schema.api_keys.c.id == key.id)
                   .values(last_used_at=first - timedelta(minutes=2)))
    store.dashboard_sessions.find(made.token)
    assert last_used() > first - timedelta(minutes=2)
