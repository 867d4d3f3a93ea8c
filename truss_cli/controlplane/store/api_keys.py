"""API keys: `<prefix>.<secret>` tokens, stored as a sha256 of the whole token.

The secret part is 32 random bytes, so the token cannot be guessed or found in a dictionary:
a slow password hash (bcrypt, argon2) or a per-key salt defends low-entropy inputs and would
only add milliseconds to every gateway request. The prefix (the row's id) finds the row in
one indexed read; the digests are compared with hmac.compare_digest so the time taken says
nothing about how much of a guess was right. A database dump alone gives no usable key.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from dataclasses import replace
from datetime import timedelta

import sqlalchemy as sa

from truss_cli.controlplane.store import schema, states
from truss_cli.controlplane.store._rows import now, to_record
from truss_cli.controlplane.store.database import read_transaction, write_transaction
from truss_cli.controlplane.store.errors import NotFound, StoreError
from truss_cli.controlplane.store.ids import new_id
from truss_cli.controlplane.store.records import ApiKey, NewApiKey

t = schema.api_keys
_SECRET_BYTES = 32
# last_used_at is a hint for `api-keys list`, not an audit log: write it at most this often per
# key, so a busy gateway does not turn every request into a write.
LAST_USED_RESOLUTION = timedelta(minutes=1)
_NO_MATCH = hashlib.sha256(b"no such key").hexdigest()


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


class ApiKeys:
    def __init__(self, engine: sa.Engine):
        self._engine = engine
        # Counts revocations through this object: what an in-memory cache of authenticated
        # keys (the gateway's, controlplane/auth.py) watches to forget them at once.
        self.revocations = 0

    def create(self, scope: str = states.SCOPE_ADMIN, models: Iterable[str] = (), name: str | None = None) -> NewApiKey:
        """A new key; its plaintext is in the result and nowhere else, ever."""
        if scope not in states.SCOPES:
            raise StoreError(f"unknown scope {scope!r}", hint="use admin or invoke")
        models = tuple(dict.fromkeys(models))
        if models and scope != states.SCOPE_INVOKE:
            raise StoreError("only an invoke key can be limited to models", hint="add --scope invoke")
        key = ApiKey(id=new_id(), name=name, scope=scope, models=models, created_at=now(), last_used_at=None,
                     revoked_at=None)
        plaintext = f"{key.id}.{secrets.token_urlsafe(_SECRET_BYTES)}"
        with write_transaction(self._engine) as db:
            db.execute(
                t.insert().values(id=key.id, name=name, scope=scope, models=list(models),
                                  token_sha256=_digest(plaintext), created_at=key.created_at)
            )
        return NewApiKey(key=key, plaintext=plaintext)

    def authenticate(self, plaintext: str) -> ApiKey | None:
        """The live key this token is, or None (unknown, malformed, revoked)."""
        prefix, dot, _ = plaintext.partition(".")
        with read_transaction(self._engine) as db:
            row = db.execute(sa.select(t).where(t.c.id == prefix)).first() if dot else None
        expected = row.token_sha256 if row is not None else _NO_MATCH
        # Compare even when no row matched, so a miss costs what a wrong secret costs.
        matches = hmac.compare_digest(_digest(plaintext), expected)
        if row is None or not matches or row.revoked_at is not None:
            return None
        stamp = now()
        if row.last_used_at is None or stamp - row.last_used_at >= LAST_USED_RESOLUTION:
            with write_transaction(self._engine) as db:
                db.execute(t.update().where(t.c.id == row.id).values(last_used_at=stamp))
            return _record(row, last_used_at=stamp)
        return _record(row)

    def list(self, include_revoked: bool = False) -> list[ApiKey]:
        query = sa.select(t).order_by(t.c.created_at, t.c.id)
        if not include_revoked:
            query = query.where(t.c.revoked_at.is_(None))
        with read_transaction(self._engine) as db:
            return [_record(row) for row in db.execute(query)]

    def revoke(self, prefix: str) -> ApiKey:
        """Revoke the key with this prefix (the part before the dot); the row stays for listings."""
        prefix = prefix.partition(".")[0]
        with write_transaction(self._engine) as db:
            row = db.execute(
                t.update().where(t.c.id == prefix, t.c.revoked_at.is_(None)).values(revoked_at=now()).returning(*t.c)
            ).first()
        if row is None:
            raise NotFound("API key", prefix, (k.prefix for k in self.list()))
        self.revocations += 1
        return _record(row)


def _record(row: sa.Row, **override: object) -> ApiKey:
    # JSON gives a list; the record holds a tuple so it stays immutable.
    return replace(to_record(ApiKey, row), models=tuple(row.models or ()), **override)  # type: ignore[arg-type]
