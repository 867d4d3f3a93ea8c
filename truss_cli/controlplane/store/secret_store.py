"""Workspace secrets, encrypted at rest with AES-256-GCM under a key file in the data dir.

AES-GCM rather than Fernet so each ciphertext can be bound to its secret's name (associated
data): a row's value copied under another name fails to decrypt instead of leaking into the
wrong variable. The key file (32 random bytes, mode 0600) is created once, atomically; a
database dump without it reveals nothing. With PostgreSQL shared by several hosts, each host
needs the same key file.
"""

from __future__ import annotations

import os
import re
import secrets as _random
import stat
from collections.abc import Iterable
from pathlib import Path

import sqlalchemy as sa
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from truss_cli.controlplane.store import schema
from truss_cli.controlplane.store._rows import now, to_record
from truss_cli.controlplane.store.database import read_transaction, write_transaction
from truss_cli.controlplane.store.errors import NotFound, StoreError
from truss_cli.controlplane.store.records import SecretInfo

t = schema.secrets
KEY_FILE_NAME = "secrets.key"
_KEY_BYTES = 32
_NONCE_BYTES = 12
_AAD_PREFIX = b"truss-secret-v1:"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9_\-\.]{1,255}$")


class SecretValue:
    """A decrypted value that does not print itself: repr, str and f-strings show a mask, so
    a log line or a traceback's locals cannot carry it. `reveal()` is the one way out."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "SecretValue('********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SecretValue) and _random.compare_digest(self._value.encode(), other._value.encode())

    __hash__ = None  # type: ignore[assignment]


def load_or_create_key(path: Path, purpose: str = "secrets") -> bytes:
    """The key in `path`, made on first use. A key file others can read is refused; errors
    name the key by `purpose` ("secrets", "dashboard session")."""
    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = path.with_name(f".{path.name}.{_random.token_hex(8)}")
        fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, _random.token_bytes(_KEY_BYTES))
            os.fsync(fd)
            os.close(fd)
            try:
                # link() fails if another process made the key first; theirs wins, whole.
                os.link(staging, path)
            except FileExistsError:
                pass
        finally:
            staging.unlink(missing_ok=True)
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise StoreError(f"the {purpose} key {path} is readable by others (mode {oct(mode & 0o777)})",
                         hint=f"chmod 600 {path}")
    key = path.read_bytes()
    if len(key) != _KEY_BYTES:
        raise StoreError(f"the {purpose} key {path} is damaged ({len(key)} bytes, not {_KEY_BYTES})")
    return key


class Secrets:
    def __init__(self, engine: sa.Engine, key: bytes):
        self._engine = engine
        self._aead = AESGCM(key)

    def __repr__(self) -> str:
        return "Secrets(<encrypted>)"

    def set(self, name: str, value: str) -> SecretInfo:
        """Create or replace the secret `name`."""
        _check_name(name)
        nonce = _random.token_bytes(_NONCE_BYTES)
        ciphertext = nonce + self._aead.encrypt(nonce, value.encode("utf-8"), _AAD_PREFIX + name.encode())
        stamp = now()
        with write_transaction(self._engine) as db:
            existing = db.execute(sa.select(t.c.created_at).where(t.c.name == name).with_for_update()).first()
            if existing is None:
                db.execute(t.insert().values(name=name, ciphertext=ciphertext, created_at=stamp, updated_at=stamp))
                created = stamp
            else:
                db.execute(t.update().where(t.c.name == name).values(ciphertext=ciphertext, updated_at=stamp))
                created = existing.created_at
        return SecretInfo(name=name, created_at=created, updated_at=stamp)

    def list(self) -> list[SecretInfo]:
        """Names and dates only: no route lists a value."""
        with read_transaction(self._engine) as db:
            rows = db.execute(sa.select(t.c.name, t.c.created_at, t.c.updated_at).order_by(t.c.name)).all()
        return [to_record(SecretInfo, row) for row in rows]

    def delete(self, name: str) -> None:
        with write_transaction(self._engine) as db:
            deleted = db.execute(t.delete().where(t.c.name == name)).rowcount
        if deleted != 1:
            raise NotFound("secret", name, (s.name for s in self.list()))

    def get(self, name: str) -> SecretValue:
        found, missing = self.resolve([name])
        if missing:
            raise NotFound("secret", name, (s.name for s in self.list()))
        return found[name]

    def resolve(self, names: Iterable[str]) -> tuple[dict[str, SecretValue], list[str]]:
        """The values of `names` for a replica start, and the names that are not set."""
        wanted = list(dict.fromkeys(names))
        with read_transaction(self._engine) as db:
            rows = db.execute(sa.select(t.c.name, t.c.ciphertext).where(t.c.name.in_(wanted))).all()
        found = {row.name: SecretValue(self._decrypt(row.name, row.ciphertext)) for row in rows}
        return found, [name for name in wanted if name not in found]

    def _decrypt(self, name: str, blob: bytes) -> str:
        try:
            plain = self._aead.decrypt(blob[:_NONCE_BYTES], blob[_NONCE_BYTES:], _AAD_PREFIX + name.encode())
        except InvalidTag:
            raise StoreError(
                f"secret {name!r} cannot be decrypted with this data dir's key",
                hint="the secrets key file was replaced; set the secret again",
            ) from None
        return plain.decode("utf-8")


def _check_name(name: str) -> None:
    if not NAME_PATTERN.match(name):
        raise StoreError(f"invalid secret name {name!r}", hint="use 1-255 letters, digits, '_', '-' and '.'")
