"""The model's own Python requirements, resolved once for every place that installs them.

A model lists them in config.yaml (`requirements:`) or in a file (`requirements_file:`) that
may include others with `-r other.txt` and `-c constraints.txt`, relative to the including
file, as pip reads them. An image build copies no model file to where pip would look for
those includes, so they are inlined here: the result is self-contained lines that install
the same way from any directory (write them to a file and pass `-r`/`-c`).

A requirement on a local path (`./pkg`, `-e .`, `file:...`, `-f ./wheels`) cannot be
installed inside an image, and works locally only by accident of the working directory, so
it is refused with the file and line; bundled packages (`packages/`) or
`external_package_dirs` are the way to ship local code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from truss_cli.config import CONFIG_FILENAME, TrussConfig
from truss_cli.errors import UsageError

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_VCS_OR_URL = re.compile(r"^(git|hg|svn|bzr)\+|^[A-Za-z][A-Za-z0-9+.-]*://")
# `-r`/`-c` with a separate, attached or `=` value.
_INCLUDE = re.compile(r"^(-r|--requirement|-c|--constraint)(?:\s*=\s*|\s+|(?<=-[rc]))(\S.*)$")
_FIND_LINKS = re.compile(r"^(-f|--find-links)(?:\s*=\s*|\s+|(?<=-f))(\S.*)$")
_EDITABLE = re.compile(r"^(-e|--editable)(?:\s*=\s*|\s+|(?<=-e))(\S.*)$")
_LOCAL_HINT = (
    "an image cannot install from a path on this machine: publish the package (or a wheel) to an index, "
    "or put its source under the model's packages/ directory or in external_package_dirs"
)


@dataclass
class ModelRequirements:
    """Self-contained requirement lines (options such as `--extra-index-url` included) and
    the constraint lines gathered from `-c` includes."""

    requirements: list[str] = field(default_factory=list)
    constraints: list[str] = field(default_factory=list)


def model_requirements(model_dir: Path | str, config: TrussConfig) -> list[str]:
    """The model's requirement lines, `-r` includes inlined. Raises UsageError (exit 2)."""
    return resolve_requirements(model_dir, config).requirements


def model_constraints(model_dir: Path | str, config: TrussConfig) -> list[str]:
    """The lines of every `-c` constraints file the requirements include (usually none)."""
    return resolve_requirements(model_dir, config).constraints


def resolve_requirements(model_dir: Path | str, config: TrussConfig) -> ModelRequirements:
    """Both at once: requirements and constraints from one read of the files."""
    model_dir = Path(model_dir)
    resolved = ModelRequirements()
    if config.requirements_file:
        path = model_dir / config.requirements_file
        if not path.is_file():
            raise UsageError(
                f"{model_dir / CONFIG_FILENAME}: requirements_file: {config.requirements_file!r} not found "
                f"(looked at {path.resolve()})"
            )
        _read_file(path.resolve(), resolved, constraint=False, stack=())
    else:
        for index, line in enumerate(config.requirements):
            where = f"{model_dir / CONFIG_FILENAME}: requirements[{index}]"
            _add_line(" ".join(line.split()), where, model_dir.resolve(), resolved, constraint=False, stack=())
    return resolved


def _read_file(path: Path, resolved: ModelRequirements, constraint: bool, stack: tuple[Path, ...]) -> None:
    if path in stack:
        chain = " -> ".join(str(item) for item in (*stack, path))
        raise UsageError(f"{stack[-1]}: requirements files include each other in a loop: {chain}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    for number, line in _logical_lines(text):
        _add_line(line, f"{path}:{number}", path.parent, resolved, constraint, (*stack, path))


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """(first line number, line) with comments removed and `\\` continuations joined, as pip does."""
    lines: list[tuple[int, str]] = []
    pending, start = "", 0
    for number, raw in enumerate(text.splitlines(), start=1):
        if not pending:
            start = number
        if raw.endswith("\\"):
            pending += raw[:-1]
            continue
        line = re.sub(r"(^|\s+)#.*$", "", pending + raw).strip()
        pending = ""
        if line:
            lines.append((start, " ".join(line.split())))
    if pending:  # a continuation on the last line
        line = re.sub(r"(^|\s+)#.*$", "", pending).strip()
        if line:
            lines.append((start, " ".join(line.split())))
    return lines


def _add_line(
    line: str, where: str, base: Path, resolved: ModelRequirements, constraint: bool, stack: tuple[Path, ...]
) -> None:
    if not line:
        return
    include = _INCLUDE.match(line)
    if include:
        flag, target = include.group(1), include.group(2).strip()
        is_constraint = constraint or flag in ("-c", "--constraint")
        if _URL.match(target):  # pip fetches these itself, from anywhere
            if is_constraint:
                resolved.constraints.append(f"-c {target}")
            else:
                resolved.requirements.append(f"-r {target}")
            return
        path = (base / target).resolve()
        if not path.is_file():
            raise UsageError(f"{where}: {flag} {target}: not found (looked at {path})")
        _read_file(path, resolved, is_constraint, stack)
        return
    find_links = _FIND_LINKS.match(line)
    if find_links and not _URL.match(find_links.group(2)):
        raise UsageError(f"{where}: {line!r} points at a local directory", hint=_LOCAL_HINT)
    if _is_local(line):
        raise UsageError(f"{where}: {line!r} is a local path", hint=_LOCAL_HINT)
    if line.startswith("-") and not _EDITABLE.match(line):
        # Global options (--index-url, --pre, ...) apply to the whole install.
        resolved.requirements.append(line)
    elif constraint:
        resolved.constraints.append(line)
    else:
        resolved.requirements.append(line)


def _is_local(line: str) -> bool:
    editable = _EDITABLE.match(line)
    if editable:
        line = editable.group(2)
    elif line.startswith("-"):
        return False
    # Environment markers and per-requirement options do not name the location.
    location = re.split(r"\s*;\s*|\s+--", line, maxsplit=1)[0].strip()
    if " @ " in location or re.match(r"^[A-Za-z0-9._-]+(\[[^\]]*\])?\s*@", location):
        location = location.split("@", 1)[1].strip()
    if location.lower().startswith("file:"):
        return True
    if _VCS_OR_URL.match(location):
        return False
    # pip's own test for "this is a path, not a name": a separator or a leading dot.
    return "/" in location or "\\" in location or location.startswith((".", "~"))
