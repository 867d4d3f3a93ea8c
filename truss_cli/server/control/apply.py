"""Applying a patch's files to the model directory: checked first, written atomically, undone
on failure.

`plan` validates the whole patch against the tree the replica serves before a byte is
written (paths, digests, modes, blobs present, the resulting tree hash). `apply_plan` then
writes each file as a temporary file in its directory + `rename` (a worker importing at that
moment sees the old file or the new one, never half of one), with its mode from the manifest,
and keeps the replaced file aside, so `Applied.rollback()` puts the old tree back exactly
when the new code fails to import or load. No fsync: the control plane holds the durable copy.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from truss_cli.sync.envelope import EnvelopeError, check_relative_path
from truss_cli.sync.manifest import EXECUTABLE_MODE, LINK_MODE, MODES, Entry, Manifest, ManifestError, file_mode, link_entry, sha256_file

# Never part of a tree (they are the interpreter's, and ignored by every client).
_SKIPPED_DIRS = frozenset({"__pycache__"})


class PatchRefused(ValueError):
    """A patch document that cannot be applied as written (a bad path, a missing blob, a
    tree hash that does not match); the message says which entry and why."""


_TEMPORARY_SUFFIX = ".truss-new"


def remove_leftovers(root: Path) -> list:
    """Delete the temporary files of a patch the replica died in the middle of (only ours,
    named `.<name>.<random>.truss-new`); the paths removed. A file already renamed into place
    is part of the tree the start-up scan hashes: the control plane sees a tree hash it does not
    know and syncs the replica again."""
    removed = []
    for directory, subdirs, files in os.walk(root):
        subdirs[:] = [name for name in subdirs if name not in _SKIPPED_DIRS and not os.path.islink(os.path.join(directory, name))]
        for name in files:
            if name.startswith(".") and name.endswith(_TEMPORARY_SUFFIX):
                path = Path(directory) / name
                _unlink(path)
                removed.append(path)
    return removed


def scan_tree(root: Path) -> Manifest:
    """The manifest of the files under `root` (a materialised tree: nothing ignored in it
    but the interpreter's bytecode caches)."""
    entries: dict[str, Entry] = {}
    for directory, subdirs, files in os.walk(root):
        subdirs[:] = sorted(name for name in subdirs if name not in _SKIPPED_DIRS)
        base = Path(directory)
        for name in list(subdirs):
            path = base / name
            if path.is_symlink():  # a link to a directory is an entry, not a subtree
                subdirs.remove(name)
                entries[path.relative_to(root).as_posix()] = link_entry(os.readlink(path))
        for name in files:
            if name.endswith(".pyc"):
                continue
            path = base / name
            relative = path.relative_to(root).as_posix()
            info = path.stat()  # a link to a file counts as the file
            if not stat.S_ISREG(info.st_mode):
                continue
            entries[relative] = Entry(sha256_file(path).hex(), file_mode(bool(info.st_mode & 0o111)))
    return Manifest(entries)


@dataclass
class Plan:
    puts: list  # (path, Entry)
    deletes: list  # paths
    manifest: Manifest  # the tree after the patch
    sources: dict = field(default_factory=dict)  # sha256 -> a file with that content


def plan(current: Manifest, document: dict, blob_dir: Path, root: Path) -> Plan:
    """Check `document`'s puts/deletes against `current`; the plan, or PatchRefused."""
    puts_raw, deletes_raw = document.get("puts") or [], document.get("deletes") or []
    if not isinstance(puts_raw, list) or not isinstance(deletes_raw, list):
        raise PatchRefused("puts and deletes must be lists")
    changes: dict = {}  # path -> Entry, or None for a delete
    puts = []
    for item in puts_raw:
        if not isinstance(item, dict) or not {"path", "sha256", "mode"} <= set(item):
            raise PatchRefused(f"puts: {item!r}: expected an object with path, sha256 and mode")
        path = _checked(item["path"])
        entry = Entry(item["sha256"], item["mode"])
        if entry.mode not in MODES:
            raise PatchRefused(f"puts: {path}: mode {entry.mode!r} is not one of {sorted(MODES)}")
        puts.append((path, entry))
        changes[path] = entry
    deletes = []
    for path in deletes_raw:
        path = _checked(path)
        if path not in current:
            raise PatchRefused(f"deletes: {path}: not in the tree this replica serves")
        deletes.append(path)
        changes[path] = None  # a path both put and deleted ends up deleted
    try:
        # O(changes) on the cached hash lines of the tree; a new Manifest(entries) would hash
        # the whole tree again on every save (~45 ms at 5,000 files).
        manifest = current.with_changes({path: entry for path, entry in changes.items() if entry is not None or path in current})
    except ManifestError as exc:
        raise PatchRefused(str(exc)) from None
    added = [path for path, _ in puts if path not in current and path in manifest]
    if added:  # a file cannot also be a directory of the new tree (only new paths can make one)
        _check_no_file_is_a_directory(manifest, added)
    sources = {}
    by_digest: Optional[dict] = None  # a file of the tree per content, found only when a put needs one
    for path, entry in puts:
        blob = blob_dir / entry.sha256
        if blob.is_file():
            sources[entry.sha256] = blob
            continue
        if by_digest is None:
            by_digest = {entry.sha256: root / known for known, entry in current.items() if entry.mode != LINK_MODE}
        if entry.sha256 in by_digest:
            sources[entry.sha256] = by_digest[entry.sha256]
        else:
            raise PatchRefused(f"puts: {path}: no blob {entry.sha256} in the envelope and no file of the tree has it")
    return Plan(puts, deletes, manifest, sources)


def _check_no_file_is_a_directory(manifest: Manifest, added: list) -> None:
    """PatchRefused when a path added to `manifest` lies under one of its files, or has files
    under it (the tree before the patch had no such pair, so only added paths are looked at)."""
    directories: set = set()
    for path in manifest:
        parent = path.rpartition("/")[0]
        while parent and parent not in directories:
            directories.add(parent)
            parent = parent.rpartition("/")[0]
    for path in added:
        parent = path.rpartition("/")[0]
        while parent:
            if parent in manifest:
                raise PatchRefused(f"{path}: its parent {parent} is a file of the tree")
            parent = parent.rpartition("/")[0]
        if path in directories:
            below = next(other for other in manifest if other.startswith(path + "/"))
            raise PatchRefused(f"{below}: its parent {path} is a file of the tree")


def _checked(path: Any) -> str:
    try:
        return check_relative_path(path)
    except EnvelopeError as exc:
        raise PatchRefused(str(exc)) from None


class Applied:
    """The undo log of one applied patch: `rollback()` restores the old files, `commit()`
    forgets them."""

    def __init__(self, root: Path, backup_dir: Path) -> None:
        self.root = root
        self.backup_dir = backup_dir
        self._undo: list = []  # (kind, target, backup) in the order applied
        self._deleted_dirs: list = []

    def rollback(self) -> None:
        for kind, target, backup in reversed(self._undo):
            if kind == "created":
                _unlink(target)
            elif kind == "replaced":
                _move(backup, target)
            elif kind == "made_dir":
                try:
                    target.rmdir()
                except OSError:
                    pass
        self._undo.clear()
        _remove_tree(self.backup_dir)

    def commit(self) -> None:
        _remove_tree(self.backup_dir)
        for directory in self._deleted_dirs:
            _prune_empty(directory, self.root)


def apply_plan(root: Path, planned: Plan, state_dir: Path) -> Applied:
    """Write `planned` into `root`; on any failure undo what was written and re-raise."""
    backup_dir = Path(tempfile.mkdtemp(prefix="undo-", dir=state_dir))
    applied = Applied(root, backup_dir)
    # Sources inside the tree may be replaced or deleted below: keep their content first.
    sources = {}
    for digest, source in planned.sources.items():
        if source.is_relative_to(root):
            kept = backup_dir / f"source-{digest}"
            shutil.copyfile(source, kept)
            source = kept
        sources[digest] = source
    try:
        for number, path in enumerate(planned.deletes):
            target = _target(root, path, applied, create=False)
            backup = backup_dir / f"old-{number}"
            _move(target, backup)
            applied._undo.append(("replaced", target, backup))
            applied._deleted_dirs.append(target.parent)
            _drop_bytecode(target)
        for number, (path, entry) in enumerate(planned.puts):
            target = _target(root, path, applied, create=True)
            temporary = _write_temporary(target, entry, sources.get(entry.sha256))
            if os.path.lexists(target):
                if target.is_dir() and not target.is_symlink():
                    _unlink(temporary)
                    raise PatchRefused(f"puts: {path}: a directory is in the way")
                backup = backup_dir / f"put-{number}"
                _copy_aside(target, backup)
                applied._undo.append(("replaced", target, backup))
            else:
                applied._undo.append(("created", target, None))
            os.replace(temporary, target)
            _drop_bytecode(target)
    except BaseException:
        applied.rollback()
        raise
    return applied


def _target(root: Path, path: str, applied: Applied, create: bool) -> Path:
    """`root/path`, its parents created if `create`; refused when a parent is a link or a
    file (a link in the tree must never let a write land outside it)."""
    parent = root
    for part in path.split("/")[:-1]:
        parent = parent / part
        if parent.is_symlink():
            raise PatchRefused(f"{path}: {parent.relative_to(root)} is a symbolic link; files are not written through links")
        if not parent.exists():
            if not create:
                raise PatchRefused(f"{path}: not found")
            parent.mkdir()
            applied._undo.append(("made_dir", parent, None))
        elif not parent.is_dir():
            raise PatchRefused(f"{path}: {parent.relative_to(root)} is a file, not a directory")
    return parent / path.rsplit("/", 1)[-1]


def _write_temporary(target: Path, entry: Entry, source: Optional[Path]) -> Path:
    descriptor, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=_TEMPORARY_SUFFIX, dir=target.parent)
    temporary = Path(name)
    try:
        if entry.mode == LINK_MODE:
            os.close(descriptor)
            os.unlink(temporary)
            assert source is not None
            os.symlink(source.read_text(encoding="utf-8", errors="surrogateescape"), temporary)
            return temporary
        with os.fdopen(descriptor, "wb") as output, open(source, "rb") as data:  # type: ignore[arg-type]
            shutil.copyfileobj(data, output, 1 << 20)
        os.chmod(temporary, 0o755 if entry.mode == EXECUTABLE_MODE else 0o644)
    except BaseException:
        _unlink(temporary)
        raise
    return temporary


def _drop_bytecode(source: Path) -> None:
    """Remove the cached bytecode of a changed module: the interpreter checks a .pyc by the
    source's mtime (whole seconds) and size, so an edit that keeps the size within the same
    second would otherwise run the old code."""
    if source.suffix != ".py":
        return
    cache = source.parent / "__pycache__"
    if cache.is_dir():
        for compiled in cache.glob(f"{source.stem}.*.pyc"):
            _unlink(compiled)


def _copy_aside(target: Path, backup: Path) -> None:
    try:
        os.link(target, backup, follow_symlinks=False)
    except OSError:  # another filesystem
        if target.is_symlink():
            os.symlink(os.readlink(target), backup)
        else:
            shutil.copy2(target, backup)


def _move(source: Path, target: Path) -> None:
    try:
        os.replace(source, target)
    except OSError:  # another filesystem
        shutil.move(str(source), str(target))


def _unlink(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def _prune_empty(directory: Path, root: Path) -> None:
    while directory != root and directory.is_relative_to(root):
        try:
            directory.rmdir()
        except OSError:
            return
        directory = directory.parent
