"""Secrets handed to the model's `__init__`: a read-only mapping that never shows its values.

Follows Truss: only names declared under `secrets:` in config.yaml can be read; a value comes
from a file named after the secret in the secrets directory, else from the environment
variable `TRUSS_SECRET_<name>`, else from the default written in config.yaml. Values are
looked up on each access, so a rotated secret file is picked up without a restart.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Iterator, Optional

from truss_cli.server.protocol import SECRET_ENV_PREFIX, SECRETS_DIR_ENV
from truss_cli.server.replica_config import secret_has_value

__all__ = ["SECRET_ENV_PREFIX", "SECRETS_DIR_ENV", "SecretNotFound", "Secrets"]


class SecretNotFound(KeyError):
    """A KeyError, so `secrets.get(name)` and `name in secrets` work as for any mapping."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class Secrets(Mapping):
    def __init__(
        self,
        declared: dict[str, Optional[str]],
        environ: Optional[Mapping[str, str]] = None,
        secrets_dir: Optional[Path] = None,
    ) -> None:
        self._declared = dict(declared)
        self._environ = os.environ if environ is None else environ
        if secrets_dir is None and self._environ.get(SECRETS_DIR_ENV):
            secrets_dir = Path(self._environ[SECRETS_DIR_ENV])
        self._dir = secrets_dir

    def __getitem__(self, name: str) -> str:
        if name not in self._declared:
            raise SecretNotFound(
                f"secret {name!r} is not declared in config.yaml; add `{name}: null` under `secrets:`"
            )
        value = self._lookup(name)
        if not secret_has_value(value):
            raise SecretNotFound(
                f"secret {name!r} has no value: set the environment variable {SECRET_ENV_PREFIX}{name}"
                + (f" or write the file {self._dir / name}" if self._dir else "")
            )
        return value

    def _lookup(self, name: str) -> Optional[str]:
        if self._dir is not None:
            path = self._dir / name
            try:
                text = path.read_text(encoding="utf-8") if path.is_file() else None
            except PermissionError:
                # Typical in an image: a root-owned 0600 file mounted for a server that runs
                # unprivileged. Falling back to the environment would hide the cause.
                raise SecretNotFound(
                    f"secret {name!r}: {path} cannot be read by this process (uid {_uid()}): permission denied; "
                    "make the file and its directory readable by the user the model server runs as"
                ) from None
            if text is not None:
                # `echo token > file` adds a newline that is never part of the secret.
                return text.rstrip("\r\n")
        if SECRET_ENV_PREFIX + name in self._environ:
            return self._environ[SECRET_ENV_PREFIX + name]
        return self._declared[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._declared)

    def __len__(self) -> int:
        return len(self._declared)

    def __repr__(self) -> str:
        # Names only: a model that logs its kwargs must not leak the values.
        return f"Secrets(names={sorted(self._declared)})"

    def missing(self) -> list[str]:
        """Declared names without a value (for a startup warning that shows names only)."""
        missing = []
        for name in self._declared:
            try:
                if not secret_has_value(self._lookup(name)):
                    missing.append(name)
            except SecretNotFound:
                missing.append(name)
        return missing


def _uid() -> object:
    return os.getuid() if hasattr(os, "getuid") else "?"  # no uids on Windows
