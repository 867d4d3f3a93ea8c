"""Dashboard sessions: a browser signed in with an admin key, found by its token's sha256.

The token is 32 random bytes (like an API key's secret), so a plain sha256 is enough to keep
a database dump from giving usable cookies. A session is live while it has not expired and
its API key is not revoked: the key is checked on every use, in the same read, so revoking a
key ends its sessions at once (and deleting a key row deletes them, ON DELETE CASCADE).

Using a session is using its key: `api-keys list` shows the key's `last_used_at` moving as it
does for the CLI's calls, written at most once a minute per key (the same resolution as
api_keys.py), so a page polling every second costs one write a minute, not one a second.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa

from truss_cli.controlplane.store import schema
from truss_cli.controlplane.store.api_keys import LAST_USED_RESOLUTION
from truss_cli.controlplane.store._rows import now, to_record
from truss_cli.controlplane.store.database import read_transaction, write_transaction
from truss_cli.controlplane.store.ids import new_id
from truss_cli.controlplane.store.records import ApiKey

t = schema.dashboard_sessions
k = schema.api_keys
_TOKEN_BYTES = 32


@dataclass(frozen=True)
class DashboardSession:
    id: str
    api_key_id: str
    csrf_token: str
    created_at: datetime
    expires_at: datetime


@dataclass(frozen=True)
class NewDashboardSession:
    """A session just made: `token` is what the cookie carries; it is stored nowhere."""

    session: DashboardSession
    token: str = field(repr=False)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


class DashboardSessions:
    def __init__(self, engine: sa.Engine):
        self._engine = engine

    def create(self, key: ApiKey, lifetime: timedelta) -> NewDashboardSession:
        stamp = now()
        session = DashboardSession(id=new_id(), api_key_id=key.id, csrf_token=secrets.token_urlsafe(_TOKEN_BYTES),
                                   created_at=stamp, expires_at=stamp + lifetime)
        token = secrets.token_urlsafe(_TOKEN_BYTES)
        with write_transaction(self._engine) as db:
            db.execute(t.insert().values(token_sha256=_digest(token), **session.__dict__))
        return NewDashboardSession(session=session, token=token)

    def find(self, token: str) -> tuple[DashboardSession, ApiKey] | None:
        """The live session this token opens and its key, or None (unknown, expired, key revoked)."""
        with read_transaction(self._engine) as db:
            row = db.execute(
                sa.select(t, k.c.name, k.c.scope, k.c.models, k.c.created_at.label("key_created_at"),
                          k.c.last_used_at, k.c.revoked_at)
                .join(k, k.c.id == t.c.api_key_id)
                .where(t.c.token_sha256 == _digest(token))
            ).first()
        stamp = now()
        if row is None or row.revoked_at is not None or row.expires_at <= stamp:
            return None
        last_used_at = row.last_used_at
        if last_used_at is None or stamp - last_used_at >= LAST_USED_RESOLUTION:
            with write_transaction(self._engine) as db:
                db.execute(k.update().where(k.c.id == row.api_key_id).values(last_used_at=stamp))
            last_used_at = stamp
        key = ApiKey(id=row.api_key_id, name=row.name, scope=row.scope, models=tuple(row.models or ()),
                     created_at=row.key_created_at, last_used_at=last_used_at, revoked_at=None)
        return to_record(DashboardSession, row), key

    def delete(self, token: str) -> bool:
        """Sign-out: the row goes, so a copy of the cookie opens nothing."""
        with write_transaction(self._engine) as db:
            return db.execute(t.delete().where(t.c.token_sha256 == _digest(token))).rowcount == 1

    def delete_expired(self) -> int:
        with write_transaction(self._engine) as db:
            return db.execute(t.delete().where(t.c.expires_at <= now())).rowcount
