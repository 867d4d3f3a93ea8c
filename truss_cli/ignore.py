"""Which paths a model directory leaves out: a default list plus `.truss_ignore` files.

The patterns are gitignore's (as Truss's `.truss_ignore` is): the last matching pattern
decides, `!` re-includes, a trailing `/` matches directories only, a slash anchors a pattern
at the root, and `**` spans directories.

As with `.gitignore` (and unlike Truss, which reads only the root file), a `.truss_ignore`
in a subdirectory applies to the paths below that directory, matched relative to it (so
`/weights` in `model/.truss_ignore` means `model/weights`), and a deeper file overrides a
shallower one. The precedence, highest first: the caller's extra patterns, then the
`.truss_ignore` files from the deepest directory up to the root, then the default list.
As in git, nothing below an ignored directory can be brought back.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

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

    def ignores(self, relative_path: str, is_dir: bool) -> bool:
        """Whether `relative_path` (posix, relative to the root) is left out."""
        return bool(self.decide(relative_path, is_dir))

    def decide(self, relative_path: str, is_dir: bool) -> bool | None:
        """True (ignored) or False (re-included) by the last matching rule; None if none matches."""
        for rule in reversed(self._rules):
            if rule.directory_only and not is_dir:
                continue
            if rule.regex.match(relative_path):
                return not rule.negated
        return None

    def __bool__(self) -> bool:
        return bool(self._rules)


class IgnoreTree:
    """The ignore rules of a whole directory tree: defaults, extra patterns and every
    `.truss_ignore` in it, each applied to the paths below its own directory.

    A directory's `.truss_ignore` is read the first time a path below it is asked about and
    remembered; `reload(directory)` forgets it (a watcher calls it when the file changes).
    `ignores` judges one entry whose parent is known not to be ignored (what a walk asks);
    `excluded` also checks every ancestor (what a file-change event needs).
    """

    def __init__(self, root: Path | str, extra: Sequence[str] = ()) -> None:
        self.root = Path(root)
        self._defaults = IgnoreRules(DEFAULT_IGNORE_PATTERNS)
        self._extra = IgnoreRules(extra)
        # directory (relative, "" for the root) -> its .truss_ignore's rules (None: no file)
        self._files: dict[str, IgnoreRules | None] = {}

    def reload(self, directory: str = "") -> None:
        """Forget what `directory`'s `.truss_ignore` said; the next question reads it again."""
        self._files.pop(directory, None)

    def forget_under(self, directory: str) -> None:
        """Forget the rule files of `directory` and everything below it: a directory moved in
        brings its `.truss_ignore` files without an event for them."""
        if not directory:
            self._files.clear()
            return
        below = directory + "/"
        for known in [known for known in self._files if known == directory or known.startswith(below)]:
            del self._files[known]

    def rules_file_of(self, directory: str) -> IgnoreRules | None:
        if directory not in self._files:
            self._files[directory] = _read_rules(self.root / directory / IGNORE_FILENAME)
        return self._files[directory]

    def ignores(self, relative_path: str, is_dir: bool) -> bool:
        """Whether the entry `relative_path` is left out, its ancestors taken as included."""
        return self.judge(relative_path.rpartition("/")[0])(relative_path, is_dir)

    def judge(self, directory: str) -> Callable[[str, bool], bool]:
        """`ignores` for the entries of `directory` ("" = the root), with the rule files that
        apply found once: a walk asks this per directory, not per file."""
        chain: list[tuple[int, IgnoreRules]] = []  # (where the path below it starts, its rules)
        parts = directory.split("/") if directory else []
        # Deepest .truss_ignore first: the nearest file's rules override the ones above it.
        for depth in range(len(parts), -1, -1):
            above = "/".join(parts[:depth])
            rules = self.rules_file_of(above)
            if rules:
                chain.append((len(above) + 1 if above else 0, rules))
        extra = self._extra if self._extra else None
        defaults = self._defaults

        def ignores(relative_path: str, is_dir: bool) -> bool:
            if extra is not None:
                decided = extra.decide(relative_path, is_dir)
                if decided is not None:
                    return decided
            for start, rules in chain:
                decided = rules.decide(relative_path[start:], is_dir)
                if decided is not None:
                    return decided
            return bool(defaults.decide(relative_path, is_dir))

        return ignores

    def excluded(self, relative_path: str, is_dir: bool) -> bool:
        """Whether `relative_path` or any directory above it is left out."""
        parts = relative_path.split("/")
        for depth in range(1, len(parts)):
            if self.ignores("/".join(parts[:depth]), True):
                return True
        return self.ignores(relative_path, is_dir)


def _read_rules(path: Path) -> IgnoreRules | None:
    try:
        text = path.read_text(encoding="utf-8")
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return None
    return IgnoreRules(text.splitlines())


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
