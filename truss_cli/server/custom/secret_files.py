"""The secrets a custom server gets, as Truss gives them: one file per declared secret holding
its value (`/secrets/<name>` in an image), and nothing in the custom server's environment.

The replica receives the values as a model server does (`truss_cli.server.secrets`: a file
named after the secret in $TRUSS_SECRETS_DIR, else the variable TRUSS_SECRET_<name>, which
`truss run` also sets from the values written in config.yaml) and writes them out before it
starts the custom server: into the directory the image's CMD names (`--secrets-path
/secrets`) or, outside a container, a private temporary directory, since a process on a
shared machine cannot own /secrets. Either way the custom server also finds the directory in
TRUSS_SECRETS_DIR. Directory 0700, files 0600, owned by the user both run as; removed when
the replica stops (a SIGKILL leaves them: nothing runs after it).

A declared secret without a value gets no file, as in Truss, and the log says why (names and
paths only, never values). A file already in the directory for a secret that has no value
here is left as it is: a directory mounted at /secrets the way Truss's own `docker run` does.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from truss_cli.server.protocol import SECRETS_DIR_ENV
from truss_cli.server.secrets import SecretNotFound, Secrets

# Where Truss puts them in an image (and Baseten mounts them); the image's CMD names it.
SECRETS_PATH_IN_IMAGE = "/secrets"
_PRIVATE_DIR_PREFIX = "truss-secrets-"


class SecretsUnavailable(Exception):
    """The secrets could not be written where the custom server reads them."""


class SecretFiles:
    """The secret files of one run of the custom server; `remove()` takes ours away again."""

    def __init__(self, directory: Path, created: bool) -> None:
        self.directory = directory
        self.written: List[str] = []  # names whose files this run wrote
        self.found: List[str] = []  # names whose files were there already (a mount)
        self.missing: Dict[str, str] = {}  # name -> why it has no file
        self._created = created  # the directory is ours alone: remove it whole

    def remove(self) -> None:
        for name in self.written:
            try:
                (self.directory / name).unlink()
            except OSError:
                pass  # on the way out, nothing better to do; the directory is private
        self.written = []
        if self._created:
            try:
                os.rmdir(self.directory)
            except OSError:
                pass  # the custom server left files of its own there


def write_secret_files(names: Sequence[str], environ: Mapping[str, str], target: Optional[Path] = None) -> SecretFiles:
    """Write each declared secret that has a value in `environ` to `<directory>/<name>`.

    `target`: the directory (created if missing; in an image, /secrets); None: a new private
    temporary directory. Raises SecretsUnavailable naming the directory and the cause.
    """
    values = Secrets({name: None for name in names}, environ)
    directory, created = _prepare(target)
    # TRUSS_SECRETS_DIR naming this very directory: its files are the values already.
    source = environ.get(SECRETS_DIR_ENV)
    in_place = bool(source) and not created and _same_directory(Path(source), directory)
    files = SecretFiles(directory, created)
    for name in names:
        if in_place and (directory / name).is_file():
            files.found.append(name)
            continue
        try:
            value = values[name]
        except SecretNotFound as exc:
            if (directory / name).is_file() and not created:
                files.found.append(name)
            else:
                files.missing[name] = str(exc)  # no value, or its file is unreadable: it says which
            continue
        try:
            _write(directory / name, value)
        except OSError as exc:
            files.remove()
            raise SecretsUnavailable(
                f"cannot write the secret {name!r} into {directory}: {exc.strerror or exc}; the user the custom "
                f"server runs as (uid {os.getuid()}) must be able to write there"
            ) from None
        files.written.append(name)
    return files


def _prepare(target: Optional[Path]) -> Tuple[Path, bool]:
    """The directory to write into, and whether this run created it."""
    if target is None:
        try:
            return Path(tempfile.mkdtemp(prefix=_PRIVATE_DIR_PREFIX)), True  # mkdtemp: mode 0700
        except OSError as exc:
            raise SecretsUnavailable(
                f"cannot create a private directory for the custom server's secrets in {tempfile.gettempdir()}: "
                f"{exc.strerror or exc}"
            ) from None
    target = Path(target)
    created = not target.exists()
    try:
        target.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise SecretsUnavailable(
            f"cannot create {target} for the custom server's secrets: {exc.strerror or exc} (uid {os.getuid()})"
        ) from None
    try:
        if target.stat().st_uid == os.geteuid():
            target.chmod(0o700)  # an image's COPY made it 0755
    except OSError:
        pass  # a read-only mount keeps its own modes
    return target, created


def _same_directory(one: Path, other: Path) -> bool:
    try:
        return os.path.samefile(one, other)
    except OSError:
        return False


def _write(path: Path, value: str) -> None:
    # O_NOFOLLOW: a link planted at that name must not send the value elsewhere.
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as output:
        os.fchmod(descriptor, 0o600)  # a file left by an earlier run may have another mode
        output.write(value)
