"""Which paths a model directory leaves out: a default list plus `.truss_ignore`.

The patterns are gitignore's (as Truss's `.truss_ignore` is): the last matching pattern
decides, `!` re-includes, a trailing `/` matches directories only, a slash anchors a pattern
at the root, and `**` spans directories.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

IGNORE_FILENAME = ".truss_ignore"

# Things that are never part of a model: they are machine-local, regenerated, or huge.
DEFAULT_IGNORE_PATTERNS: tuple[str, ...] = (
    ".git/",
    ".hg/",
    ".svn/",
    "__pycache__/",
    "*.py[cod]",
    ".venv/",
    "venv/",
    ".mypy_cache/",
    ".pytest_cache/",
    ".ruff_cache/",
    ".ipynb_checkpoints/",
    ".idea/",
    ".vscode/",
    ".DS_Store",
    "*.swp",
    "*~",
)


@dataclass(frozen=True)
class _Rule:
    regex: re.Pattern[str]
    negated: bool
    directory_only: bool


class IgnoreRules:
    """Gitignore-style rules: the last matching pattern decides; `!` re-includes."""

    def __init__(self, patterns: Iterable[str] = ()):
        self._rules = [rule for rule in (_compile(line) for line in patterns) if rule is not None]

    @classmethod
    def for_directory(cls, root: Path, extra: Sequence[str] = ()) -> "IgnoreRules":
        """The default list, then `root/.truss_ignore`, then `extra`."""
        patterns = list(DEFAULT_IGNORE_PATTERNS)
        ignore_file = root / IGNORE_FILENAME
        if ignore_file.is_file():
            patterns.extend(ignore_file.read_text(encoding="utf-8").splitlines())
        patterns.extend(extra)
        return cls(patterns)

    def ignores(self, relative_path: str, is_dir: bool) -> bool:
        """Whether `relative_path` (posix, relative to the root) is left out."""
        for rule in reversed(self._rules):
            if rule.directory_only and not is_dir:
                continue
            if rule.regex.match(relative_path):
                return not rule.negated
        return False


def _compile(line: str) -> _Rule | None:
    line = line.rstrip("\n")
    # Trailing spaces are insignificant unless escaped (gitignore).
    stripped = line.rstrip(" ")
    if stripped.endswith("\\") and len(line) > len(stripped):
        stripped += " "
    line = stripped
    if not line or line.startswith("#"):
        return None
    negated = line.startswith("!")
    if negated:
        line = line[1:]
    elif line.startswith("\\!") or line.startswith("\\#"):
        line = line[1:]
    directory_only = line.endswith("/")
    line = line.rstrip("/")
    if not line:
        return None
    # A slash at the start or in the middle anchors the pattern at the root; otherwise it
    # matches a name at any depth.
    anchored = "/" in line
    line = line.lstrip("/")
    body = _glob_to_regex(line)
    prefix = "^" if anchored else "^(?:.*/)?"
    return _Rule(re.compile(prefix + body + "$", re.DOTALL), negated, directory_only)


def _glob_to_regex(glob: str) -> str:
    out: list[str] = []
    i, n = 0, len(glob)
    while i < n:
        char = glob[i]
        if char == "*":
            if glob.startswith("**", i) and (i == 0 or glob[i - 1] == "/"):
                end = i + 2
                if end == n:  # `dir/**`: everything inside
                    out.append(".*")
                    i = end
                    continue
                if glob[end] == "/":  # `**/` or `a/**/b`: zero or more directories
                    out.append("(?:.*/)?")
                    i = end + 1
                    continue
            out.append("[^/]*")
            while i < n and glob[i] == "*":
                i += 1
            continue
        if char == "?":
            out.append("[^/]")
        elif char == "[":
            close = glob.find("]", i + 2 if glob[i + 1 : i + 2] in ("!", "^") else i + 1)
            if close == -1:
                out.append(re.escape(char))
            else:
                inner = glob[i + 1 : close]
                if inner[:1] in ("!", "^"):
                    inner = "^" + inner[1:]
                out.append("[" + inner.replace("\\", "\\\\") + "]")
                i = close
        elif char == "\\" and i + 1 < n:
            i += 1
            out.append(re.escape(glob[i]))
        else:
            out.append(re.escape(char))
        i += 1
    return "".join(out)
