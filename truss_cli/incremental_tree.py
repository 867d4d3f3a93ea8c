"""A model directory's manifest, kept current from file-change events at the cost of the change.

`truss push --watch` needs, per save, the Delta from the last tree to the current one and the
new tree hash. Truss walks and hashes the whole tree (three times) per save; this module
looks only at the paths the watcher names:

- each path is `lstat`-ed *now* (not trusted from the event: an editor's atomic save, vim's
  `4913` probe and temp files appear and vanish inside one batch), judged by the same rules
  as `list_files` (`TreeLister.lookup`: ignore files, links, virtual environments), and its
  content hashed only when its identity (size, mtime_ns, inode, device) changed, or was
  written in the last two seconds (`TreeHasher`'s rule against same-timestamp rewrites);
- a directory event scans that directory only, walking just the subdirectories this tree
  did not know (a new directory can carry files created before the watch reached it);
- a gone path drops the file, or every known file below it (a deleted directory);
- a changed `.truss_ignore` re-reads its rules and rescans the subtree it governs.
`full_rescan()` walks everything again (re-hashing nothing unchanged): at start, and whenever
the caller suspects missed events (watcher error or overflow, resume from sleep, a 409).

`external_package_dirs` are part of what a deployment runs, so their files enter the manifest
under the reserved prefix `__external__/<index>/` (index = position in config.yaml's list),
each with its own ignore files. The image merges them into `/packages` anyway; a receiver
that materialises a tree maps the prefix back. A model directory holding a top-level
`__external__` of its own is refused when external dirs are watched (the names would clash).
"""

from __future__ import annotations

import bisect
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from truss_cli.errors import UsageError
from truss_cli.ignore import IGNORE_FILENAME
from truss_cli.sync.manifest import Entry, Manifest, file_mode, link_entry
from truss_cli.sync.patch import Delta, PatchError, check_relative_path, diff
from truss_cli.tree import DIRECTORY, DigestFunction, TreeFile, TreeHasher, TreeLister

__all__ = ["EXTERNAL_PREFIX", "IncrementalTree", "external_prefix"]

EXTERNAL_PREFIX = "__external__"


def external_prefix(index: int) -> str:
    """Where the files of the `index`-th external package dir live in the manifest."""
    return f"{EXTERNAL_PREFIX}/{index}/"


@dataclass
class _Source:
    """One watched root: the model directory (prefix "") or an external package dir."""

    prefix: str
    root: Path
    extra_ignore: Sequence[str]
    lister: TreeLister
    entries: dict[str, Entry] = field(default_factory=dict)  # relative to root
    paths: list[str] = field(default_factory=list)  # the keys of `entries`, sorted

    def fresh_lister(self) -> None:
        self.lister = TreeLister(self.root, self.extra_ignore)

    def range_under(self, directory: str) -> tuple[int, int]:
        """The slice of `paths` below `directory` ("" = all)."""
        if not directory:
            return 0, len(self.paths)
        # Every path below "d/" sorts between "d/" and "d0" ("0" follows "/").
        return bisect.bisect_left(self.paths, directory + "/"), bisect.bisect_left(self.paths, directory + "0")

    def has_under(self, directory: str) -> bool:
        start, end = self.range_under(directory)
        return start < end


class IncrementalTree:
    """The manifest of `root` (and its external package dirs), advanced by `update(paths)`."""

    def __init__(
        self,
        root: Path | str,
        external_dirs: Sequence[Path | str] = (),
        extra_ignore: Sequence[str] = (),
        digest_file: DigestFunction | None = None,
    ) -> None:
        roots = [(Path(os.path.realpath(root)), "")]
        roots += [(Path(os.path.realpath(path)), external_prefix(index)) for index, path in enumerate(external_dirs)]
        for path, _ in roots:
            if not path.is_dir():
                raise UsageError(f"{path}: not a directory (nothing to watch there)")
        self._sources = [_Source(prefix, path, extra_ignore, TreeLister(path, extra_ignore)) for path, prefix in roots]
        self._hasher = TreeHasher(digest_file)
        self._manifest = Manifest({})
        self._stale = False
        self.full_rescan()

    @property
    def manifest(self) -> Manifest:
        return self._manifest

    @property
    def roots(self) -> list[Path]:
        """The directories to watch (resolved), the model directory first."""
        return [source.root for source in self._sources]

    def tree_hash(self) -> str:
        return self._manifest.tree_hash()

    def wants(self, path: str | Path) -> bool:
        """False when `path` certainly cannot change the tree (cheap: no stat, rule files read
        once): a watcher's filter. A `.truss_ignore` is always wanted (it can re-include files)."""
        for source, relative in self._locate(path):
            if relative.rsplit("/", 1)[-1] == IGNORE_FILENAME:
                return True
            rules = source.lister.rules
            if not (rules.excluded(relative, False) and rules.excluded(relative, True)):
                return True
        return False

    def update(self, paths: Iterable[str | Path]) -> Delta:
        """The Delta since the last call, after looking at `paths` (absolute, as a watcher
        reports them; paths outside the watched roots are skipped). May raise UsageError
        (a link that points outside the tree); the tree then rescans fully on the next call."""
        if self._stale:
            return self.full_rescan()
        changes: dict[str, Entry | None] = {}
        try:
            for path in dict.fromkeys(str(path) for path in paths):
                for source, relative in self._locate(path):
                    self._look_at(source, relative, changes)
        except BaseException:
            self._stale = True
            raise
        delta = Delta({path: entry for path, entry in changes.items() if self._manifest.get(path) != entry})
        self._manifest = self._manifest.with_changes(delta)
        return delta

    def full_rescan(self) -> Delta:
        """Walk every root again (re-reading `.truss_ignore` files, hashing only files whose
        identity changed) and return the Delta from the last known tree."""
        self._stale = True
        entries: dict[str, Entry] = {}
        for source in self._sources:
            source.fresh_lister()
            listed = source.lister.list()
            if source.prefix == "" and len(self._sources) > 1:
                clash = [item.relative_path for item in listed if item.relative_path.startswith(EXTERNAL_PREFIX + "/")]
                if clash:
                    raise UsageError(
                        f"{source.root / clash[0]}: {EXTERNAL_PREFIX}/ is reserved for external_package_dirs while "
                        "watching",
                        hint=f"rename {source.root / EXTERNAL_PREFIX}, or list it in .truss_ignore",
                    )
            source.entries = {}
            for item in listed:
                entry = self._entry(item)
                if entry is not None:
                    source.entries[item.relative_path] = entry
            source.paths = sorted(source.entries)
            entries.update((source.prefix + path, entry) for path, entry in source.entries.items())
        new = Manifest(entries)
        delta = diff(self._manifest, new)
        self._manifest = self._manifest.with_changes(delta) if len(delta) < len(new) // 2 else new
        self._stale = False
        return delta

    # -- one path ---------------------------------------------------------------------------

    def _locate(self, path: str | Path) -> list[tuple[_Source, str]]:
        """The sources `path` lies in (an external dir may sit inside the model directory),
        with the path relative to each ("" for the root itself)."""
        text = os.fspath(path)
        found = []
        for source in self._sources:
            root = str(source.root)
            if text == root:
                found.append((source, ""))
            elif text.startswith(root + os.sep):
                found.append((source, text[len(root) + 1 :].replace(os.sep, "/")))
        return found

    def _look_at(self, source: _Source, relative: str, changes: dict[str, Entry | None]) -> None:
        if not relative:
            self._rescan(source, "", recursive=False, changes=changes)
            return
        directory, _, name = relative.rpartition("/")
        if name == IGNORE_FILENAME:
            source.lister.rules.reload(directory)
            self._rescan(source, directory, recursive=True, changes=changes)
            return
        found = source.lister.lookup(relative)
        if found is None:
            self._drop(source, relative, changes)
            self._drop_under(source, relative, changes)
        elif found == DIRECTORY:
            self._drop(source, relative, changes)  # a file replaced by a directory
            if not source.has_under(relative):
                # New to this tree (created, or moved in whole): any .truss_ignore inside
                # came without an event, so what was remembered for these paths is stale.
                source.lister.rules.forget_under(relative)
            self._rescan(source, relative, recursive=False, changes=changes)
        else:
            assert isinstance(found, TreeFile)
            self._drop_under(source, relative, changes)  # a directory replaced by a file
            self._put(source, found, changes)

    def _rescan(self, source: _Source, directory: str, recursive: bool, changes: dict[str, Entry | None]) -> None:
        """Bring the files below `directory` up to date: all of them (`recursive`), or the
        directory's own entries plus subdirectories this tree holds no files of."""
        if directory and source.lister.lookup(directory) != DIRECTORY:
            self._drop(source, directory, changes)
            self._drop_under(source, directory, changes)
            return
        known_subdirectories: set[str] = set()

        def descend(subdirectory: str) -> bool:
            if recursive or not source.has_under(subdirectory):
                return True
            known_subdirectories.add(subdirectory)  # its own events keep it current
            return False

        listed = source.lister.list(directory, descend)
        present = {item.relative_path for item in listed}
        prefix = directory + "/" if directory else ""
        gone = []
        index, end = source.range_under(directory)
        while index < end:
            path = source.paths[index]
            rest = path[len(prefix) :]
            if "/" in rest:
                subdirectory = prefix + rest.split("/", 1)[0]
                if subdirectory in known_subdirectories:
                    index = bisect.bisect_left(source.paths, subdirectory + "0")
                    continue
            if path not in present:
                gone.append(path)
            index += 1
        for path in gone:
            self._drop(source, path, changes)
        for item in listed:
            self._put(source, item, changes)

    def _put(self, source: _Source, item: TreeFile, changes: dict[str, Entry | None]) -> None:
        entry = self._entry(item)
        if entry is None:
            self._drop(source, item.relative_path, changes)
            return
        path = item.relative_path
        if path not in source.entries:
            bisect.insort(source.paths, path)
        if source.entries.get(path) != entry:
            source.entries[path] = entry
            changes[source.prefix + path] = entry

    def _drop(self, source: _Source, path: str, changes: dict[str, Entry | None]) -> None:
        if source.entries.pop(path, None) is not None:
            del source.paths[bisect.bisect_left(source.paths, path)]
            changes[source.prefix + path] = None

    def _drop_under(self, source: _Source, directory: str, changes: dict[str, Entry | None]) -> None:
        start, end = source.range_under(directory)
        if start == end:
            return
        for path in source.paths[start:end]:
            del source.entries[path]
            changes[source.prefix + path] = None
        del source.paths[start:end]

    def _entry(self, item: TreeFile) -> Entry | None:
        _check_name(item)
        if item.link_target is not None:
            return link_entry(item.link_target)
        try:
            digest = self._hasher.file_digest(item)
        except (FileNotFoundError, NotADirectoryError):
            return None  # gone between the look and the read: its deletion event follows
        return Entry(digest.hex(), file_mode(item.executable))


def _check_name(item: TreeFile) -> None:
    """Refuse a name a patch cannot carry, as `truss push` refuses what an archive cannot."""
    try:
        check_relative_path(item.relative_path)
        item.relative_path.encode("utf-8")
    except (PatchError, UnicodeEncodeError):
        shown = item.relative_path.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        raise UsageError(
            f"{item.path.parent / shown.rpartition('/')[2]}: a file name a patch cannot carry (not valid UTF-8, or "
            "containing a backslash)",
            hint="rename it, or list it in .truss_ignore",
        ) from None
