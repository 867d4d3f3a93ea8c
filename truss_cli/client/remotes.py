"""The remotes a user pushes to, kept in `~/.trussrc` in Truss's own format.

Truss reads the file with configparser: one section per remote, with `remote_provider`,
`remote_url` and `api_key`. Both tools share it, so this module changes only the sections
it is asked to change and writes nothing Truss would misread:
- our control planes are written with `remote_provider = truss-cli` (Truss's factory says
  it does not know that provider, instead of sending Baseten's GraphQL to a server that
  does not speak it); a `baseten` section is listed like any other.
- Truss has no "current remote". Ours is a `truss_cli_default = true` key in the chosen
  section: Truss passes its remote class only the parameters it declares, so the extra key
  is ignored there, and removing the section removes the choice with it. (A section of its
  own would show up in Truss as a remote; `[DEFAULT]` keys leak into every section.)
- the file holds API keys, so it is written mode 0600 (to a temporary file, renamed). A
  file others can read (Truss writes it with the umask's 0644) is narrowed to 0600 when
  read, with a warning.
Comments in the file are not kept (configparser drops them, in Truss too).

Library code: the path comes from the caller (`trussrc_path(Settings.home)`).
"""

from __future__ import annotations

import configparser
import io
import os
import re
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from truss_cli.errors import UsageError

TRUSSRC_NAME = ".trussrc"
PROVIDER = "truss-cli"
# The control plane `truss push` starts on this machine when no remote is configured.
LOCAL_REMOTE = "local"
_DEFAULT_KEY = "truss_cli_default"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,62}$")
_PREFIX_SHOWN = 8
_ADD_HINT = "add one with `truss remote add NAME URL --api-key KEY`"


def trussrc_path(home: Path) -> Path:
    return home / TRUSSRC_NAME


@dataclass(frozen=True)
class Remote:
    name: str
    url: str
    api_key: str = field(repr=False)  # never in a log or a traceback by accident
    provider: str
    is_default: bool = False

    @property
    def key_prefix(self) -> str:
        """Enough of the API key to tell keys apart, never enough to use it."""
        shown = min(_PREFIX_SHOWN, len(self.api_key) // 3)
        return self.api_key[:shown] + "…"


@dataclass(frozen=True)
class Remotes:
    """The remotes of one `.trussrc`, in file order, and what reading it had to fix."""

    remotes: tuple[Remote, ...]
    warnings: tuple[str, ...] = field(default=())

    @property
    def names(self) -> list[str]:
        return [remote.name for remote in self.remotes]

    @property
    def default(self) -> Remote | None:
        return next((remote for remote in self.remotes if remote.is_default), None)

    def get(self, name: str) -> Remote:
        for remote in self.remotes:
            if remote.name == name:
                return remote
        known = ", ".join(self.names) or "none"
        raise UsageError(f"no remote named {name!r} (configured: {known})", hint=_ADD_HINT)

    def resolve(self, name: str | None) -> Remote:
        """The remote a command talks to: `name` (its --remote), else the one in use, else the only one."""
        if name is not None:
            return self.get(name)
        if self.default is not None:
            return self.default
        if len(self.remotes) == 1:
            return self.remotes[0]
        if not self.remotes:
            raise NoRemote("no remote configured", hint=_ADD_HINT)
        raise UsageError(
            f"several remotes and none in use: {', '.join(self.names)}",
            hint="choose one with `truss remote use NAME`, or pass --remote NAME",
        )


class NoRemote(UsageError):
    """No remote at all: `truss push` starts the local control plane instead."""


def read_remotes(path: Path) -> Remotes:
    """The remotes in the `.trussrc` at `path` (none if it does not exist)."""
    parser, warnings = _load(path)
    remotes = []
    for name in parser.sections():
        section = parser[name]
        remotes.append(
            Remote(
                name=name,
                url=section.get("remote_url", ""),
                api_key=section.get("api_key", ""),
                provider=section.get("remote_provider", ""),
                is_default=section.get(_DEFAULT_KEY, "").strip().lower() == "true",
            )
        )
    return Remotes(tuple(remotes), tuple(warnings))


def add_remote(
    path: Path, name: str, url: str, api_key: str, use: bool = False, replace: bool = False, provider: str = PROVIDER
) -> Remote:
    """Add the remote `name` (or, with `replace`, change it); with `use`, make it the one in use."""
    check_name(name)
    url = check_url(url)
    check_api_key(api_key)
    parser, _ = _load(path)
    was_default = False
    if parser.has_section(name):
        if not replace:
            raise UsageError(
                f"a remote named {name!r} exists already ({parser[name].get('remote_url', 'no URL')})",
                hint="remove it with `truss remote remove NAME`, or pass --replace",
            )
        was_default = parser[name].get(_DEFAULT_KEY, "").strip().lower() == "true"
        parser.remove_section(name)
    parser[name] = {"remote_provider": provider, "remote_url": url, "api_key": api_key}
    if use:
        _choose(parser, name)
    elif was_default:
        parser[name][_DEFAULT_KEY] = "true"
    _save(path, parser)
    return read_remotes(path).get(name)


def use_remote(path: Path, name: str) -> Remote:
    """Make `name` the remote commands talk to when no --remote is given."""
    parser, _ = _load(path)
    read_remotes(path).get(name)  # a clear error for an unknown name
    _choose(parser, name)
    _save(path, parser)
    return read_remotes(path).get(name)


def remove_remote(path: Path, name: str) -> Remote:
    """Remove the section `name` (and, with it, the choice of it as the remote in use)."""
    removed = read_remotes(path).get(name)
    parser, _ = _load(path)
    parser.remove_section(name)
    _save(path, parser)
    return removed


def check_name(name: str) -> str:
    if not _NAME.match(name) or name.upper() == configparser.DEFAULTSECT:
        raise UsageError(
            f"remote name {name!r}: expected letters, digits, '_', '-' and '.', starting with a letter or digit"
        )
    return name


def check_url(url: str) -> str:
    """`url` without a trailing slash, if it is a plain http(s) base URL."""
    example = "expected an http(s) URL such as http://127.0.0.1:8800"
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError as exc:
        raise UsageError(f"remote URL {url!r}: {exc}; {example}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"remote URL {url!r}: {example}")
    if parts.username or parts.password:
        raise UsageError(f"remote URL {url!r}: has credentials in it; pass the key with --api-key instead")
    if parts.query or parts.fragment:
        raise UsageError(f"remote URL {url!r}: has a query or fragment; {example}")
    return url.strip().rstrip("/")


def check_api_key(api_key: str) -> str:
    # It goes into an INI line and an HTTP header: whitespace would corrupt either.
    if not api_key or any(char.isspace() for char in api_key) or not api_key.isprintable():
        raise UsageError("API key: expected a non-empty key without spaces or control characters")
    return api_key


def _choose(parser: configparser.ConfigParser, name: str) -> None:
    for section in parser.sections():
        parser.remove_option(section, _DEFAULT_KEY)
    parser[name][_DEFAULT_KEY] = "true"


def _load(path: Path) -> tuple[configparser.ConfigParser, list[str]]:
    # No interpolation: a key with a '%' must be read as written.
    parser = configparser.ConfigParser(interpolation=None)
    warnings = []
    try:
        info = path.stat()
    except FileNotFoundError:
        return parser, warnings
    if info.st_mode & 0o077:
        shown = f"{stat.S_IMODE(info.st_mode):o}"
        try:
            path.chmod(0o600)
            warnings.append(f"{path} was readable by other users (mode {shown}); it holds API keys: now 0600")
        except OSError as exc:
            warnings.append(f"{path} is readable by other users (mode {shown}) and could not be fixed: {exc.strerror}")
    try:
        parser.read_string(path.read_text(encoding="utf-8"), source=str(path))
    except (configparser.Error, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: not a valid .trussrc ({exc})".replace("\n", " "), hint="fix or remove the file") from None
    return parser, warnings


def _save(path: Path, parser: configparser.ConfigParser) -> None:
    text = io.StringIO()
    parser.write(text)
    target = Path(os.path.realpath(path))  # a dotfiles link keeps pointing at the real file
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=".trussrc.", dir=target.parent)  # created 0600
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as output:
            output.write(text.getvalue())
            output.flush()
            os.fsync(output.fileno())
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
