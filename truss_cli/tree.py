"""A model directory's file set, and its manifest and hash.

Everything that ships a model directory somewhere (the image build context, and later
`truss push` and the file watcher) asks this module which files belong to the model and
whether they changed, so all of them agree. What is left out is `truss_cli.ignore`'s call:
a default list (version control, caches, virtual environments) plus the directory's
`.truss_ignore` files (as in Truss, and also nested ones, applied below their directory as
`.gitignore` files are).

The manifest format and the tree hash over it are defined once, in `truss_cli.sync.manifest`
(replicas have it too); this module builds manifests from the files it lists and remembers
per-file digests, so that hashing again reads only the files that changed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from truss_cli.errors import UsageError
from truss_cli.ignore import IgnoreTree
from truss_cli.sync.manifest import Entry, Manifest, file_mode, link_entry, sha256_file

__all__ = [
    "DIRECTORY", "DigestFunction", "TreeFile", "TreeHasher", "TreeLister", "cached_content_hash", "cached_manifest",
    "content_hash", "list_files", "sha256_file",
]

# A directory holding this file is a virtual environment whatever its name (`env/`, `.py311/`).
_VENV_MARKER = "pyvenv.cfg"
_STORE_VERSION = 1
_Identity = tuple[int, int, int, int]  # size, mtime_ns, inode, device


@dataclass(frozen=True)
class TreeFile:
    relative_path: str  # posix, relative to the tree's root
    path: Path
    size: int
    mtime_ns: int
    executable: bool
    # Set for a link to a directory inside the tree: the relative target, kept as a link.
    link_target: str | None = None


_OUTSIDE_LINK_HINT = "copy it into the model directory, or list it in .truss_ignore"


def list_files(root: Path | str, extra_ignore: Sequence[str] = ()) -> list[TreeFile]:
    """Every file of the tree at `root` that is not ignored, sorted by relative path.

    Symbolic links never take files from outside the tree into it: a build context must not
    pick up `~/.ssh` through a link to the home directory. So, for a link that is not ignored:
    - pointing outside `root` (or nowhere): a UsageError naming it;
    - to a file inside: followed, the file's content is listed under the link's name;
    - to a directory inside: listed as a link (`link_target`, relative) and not descended, so
      the image gets the same link and nothing is listed twice (or forever, for a loop).
    Ignore rules (`truss_cli.ignore.IgnoreTree`: defaults, `extra_ignore`, and every
    `.truss_ignore` of the tree) are applied first, so an ignored link is never looked at.
    """
    return TreeLister(root, extra_ignore).list()


# What `TreeLister.lookup` answers for a directory that belongs to the tree (to be walked).
DIRECTORY = "directory"


class TreeLister:
    """The rules of `list_files` for one tree, for a whole walk or for single paths.

    A watcher keeps one lister (and so one `IgnoreTree`, whose `.truss_ignore` files are read
    once) and asks about the paths that changed, with the same answers a full listing gives.
    """

    def __init__(self, root: Path | str, extra_ignore: Sequence[str] = (), rules: IgnoreTree | None = None) -> None:
        self.root = Path(root)
        self.real_root = Path(os.path.realpath(self.root))
        self.rules = rules if rules is not None else IgnoreTree(self.root, extra_ignore)

    def list(self, directory: str = "", descend: Callable[[str], bool] | None = None) -> list[TreeFile]:
        """The files below `directory` (relative; "" = the root, which must itself belong to
        the tree), sorted. `descend(subdirectory)` can stop the walk from entering a
        subdirectory (default: enter all)."""
        found: list[TreeFile] = []
        seen_dirs: set[tuple[int, int]] = set()

        def walk(path: Path, prefix: str) -> None:
            try:
                info = path.stat()
            except OSError:
                return
            key = (info.st_dev, info.st_ino)
            if key in seen_dirs:  # a bind mount of a parent: real directories can loop too
                return
            seen_dirs.add(key)
            try:
                with os.scandir(path) as entries:
                    children = sorted(entries, key=lambda entry: entry.name)
            except (FileNotFoundError, NotADirectoryError):
                return  # gone since the caller looked: a watcher hears about it next
            ignores = self.rules.judge(prefix[:-1])
            for entry in children:
                relative = prefix + entry.name
                try:
                    is_dir = entry.is_dir()  # follows a link: ignore rules see what it points to
                    is_link = entry.is_symlink()
                except OSError:
                    continue
                if ignores(relative, is_dir):
                    continue
                if not is_link and is_dir:
                    if os.path.exists(os.path.join(entry.path, _VENV_MARKER)):
                        continue
                    if descend is None or descend(relative):
                        walk(Path(entry.path), relative + "/")
                    continue
                item = self._file(entry.path, relative, is_dir, is_link)
                if item is not None:
                    found.append(item)

        walk(self.root / directory if directory else self.root, directory + "/" if directory else "")
        found.sort(key=lambda item: item.relative_path)
        return found

    def lookup(self, relative: str) -> TreeFile | str | None:
        """What `relative` is now: a TreeFile, DIRECTORY (a directory of the tree), or None
        (absent, ignored, below an ignored directory, a virtual environment or a directory
        link, or not a regular file)."""
        parts = relative.split("/")
        for depth in range(1, len(parts)):
            ancestor = "/".join(parts[:depth])
            path = self.root / ancestor
            if self.rules.ignores(ancestor, True) or path.is_symlink() or (path / _VENV_MARKER).exists():
                return None
        path = self.root / relative
        try:
            link_info = path.lstat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        is_link = stat.S_ISLNK(link_info.st_mode)
        is_dir = path.is_dir()
        if self.rules.ignores(relative, is_dir):
            return None
        if is_dir and not is_link:
            return None if (path / _VENV_MARKER).exists() else DIRECTORY
        return self._file(str(path), relative, is_dir, is_link)

    def _file(self, path: str, relative: str, is_dir: bool, is_link: bool) -> TreeFile | None:
        # `path` is a string: a Path per entry is the largest cost of listing a big tree.
        if is_link:
            target = _link_target_inside(path, relative, self.real_root)
            if is_dir:
                link_target = os.path.relpath(target, os.path.realpath(os.path.dirname(path)))
                st = os.lstat(path)
                return TreeFile(relative, Path(path), 0, st.st_mtime_ns, False, link_target)
        try:
            st = os.stat(path)
        except OSError:
            return None
        if not stat.S_ISREG(st.st_mode):
            return None
        return TreeFile(relative, Path(path), st.st_size, st.st_mtime_ns, bool(st.st_mode & 0o111))


def _link_target_inside(link: str, relative: str, real_root: Path) -> Path:
    """Where the symbolic link `link` points, or a UsageError if that is outside `real_root`."""
    target = Path(os.path.realpath(link))
    if not target.exists():
        raise UsageError(
            f"{relative}: a symbolic link to {os.readlink(link)}, which does not exist (in {real_root})",
            hint="remove the link, or list it in .truss_ignore",
        )
    if target != real_root and real_root not in target.parents:
        raise UsageError(
            f"{relative}: a symbolic link to {target}, outside {real_root} (what it points to would be shipped "
            "with the model)",
            hint=_OUTSIDE_LINK_HINT,
        )
    return target


DigestFunction = Callable[[Path], bytes]


class TreeHasher:
    """Content hashes of trees, remembering per-file digests between calls.

    A long-lived hasher (a watcher, a push loop) re-reads only files whose size, mtime or
    inode changed. Files modified in the last two seconds are not remembered, because a
    second write within the filesystem's timestamp granularity would go unnoticed.
    `digest_file` reads one file's sha256 (a parameter so a caller can observe the reads).
    """

    _RACY_WINDOW_NS = 2_000_000_000

    def __init__(self, digest_file: DigestFunction | None = None) -> None:
        self._digest_file = digest_file or sha256_file
        self._digests: dict[str, tuple[_Identity, bytes]] = {}

    def file_digest(self, item: TreeFile) -> bytes:
        st = item.path.stat()
        identity = (st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev)
        key = str(item.path)
        cached = self._digests.get(key)
        if cached is not None and cached[0] == identity:
            return cached[1]
        digest = self._digest_file(item.path)
        if time.time_ns() - st.st_mtime_ns > self._RACY_WINDOW_NS:
            self._digests[key] = (identity, digest)
        else:
            self._digests.pop(key, None)
        return digest

    def manifest(self, files: Sequence[TreeFile]) -> Manifest:
        """The manifest of `files` (see `truss_cli.sync.manifest` for what a hash covers)."""
        entries = {}
        for item in files:
            if item.link_target is not None:
                entries[item.relative_path] = link_entry(item.link_target)
            else:
                entries[item.relative_path] = Entry(self.file_digest(item).hex(), file_mode(item.executable))
        return Manifest(entries)

    def hash_files(self, files: Sequence[TreeFile]) -> str:
        """The tree hash of `files`: their manifest's."""
        return self.manifest(files).tree_hash()

    def hash_tree(self, root: Path | str, extra_ignore: Sequence[str] = ()) -> str:
        return self.hash_files(list_files(root, extra_ignore))

    def load(self, store: Path) -> None:
        """Remember the digests saved in `store` (a missing or unreadable store is empty)."""
        try:
            saved = json.loads(store.read_text(encoding="utf-8"))
            if saved.get("version") != _STORE_VERSION:
                return
            for key, (size, mtime_ns, inode, device, digest) in saved["files"].items():
                self._digests[key] = ((size, mtime_ns, inode, device), bytes.fromhex(digest))
        except (OSError, ValueError, KeyError, TypeError):
            return

    def save(self, store: Path, files: Sequence[TreeFile]) -> None:
        """Write the digests of `files` (only those: deleted files drop out) to `store`.

        Written to a temporary file and renamed, so a concurrent reader sees the old store or
        the new one; concurrent writers each write a complete store and the last one wins.
        """
        entries = {}
        for item in files:
            cached = self._digests.get(str(item.path))
            if cached is not None:
                entries[str(item.path)] = [*cached[0], cached[1].hex()]
        text = json.dumps({"version": _STORE_VERSION, "files": entries}, sort_keys=True)
        try:
            if store.read_text(encoding="utf-8") == text:
                return
        except OSError:
            pass
        store.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{store.name}.", dir=store.parent)
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as output:
                output.write(text)
            os.replace(temporary, store)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise


def content_hash(root: Path | str, extra_ignore: Sequence[str] = ()) -> str:
    """The sha256 content hash of the tree at `root` (ignored files excluded)."""
    return TreeHasher().hash_tree(root, extra_ignore)


def cached_manifest(
    root: Path | str, files: Sequence[TreeFile], cache_root: Path, digest_file: DigestFunction | None = None
) -> Manifest:
    """`TreeHasher().manifest(files)`, with the per-file digests kept between runs.

    The digests of the tree at `root` are stored under `cache_root/tree-digests/`, keyed by
    each file's path, size, mtime and inode, so hashing an unchanged multi-GB `data/` again
    reads no file contents. Like git's index, a content change that keeps size, mtime
    (nanoseconds) and inode all equal goes unnoticed; a file written in the last two seconds
    is always re-read. Deleting the store forces a full re-read.
    """
    store = cache_root / "tree-digests" / f"{hashlib.sha256(str(Path(root).resolve()).encode()).hexdigest()[:32]}.json"
    hasher = TreeHasher(digest_file)
    hasher.load(store)
    result = hasher.manifest(files)
    try:
        hasher.save(store, files)
    except OSError:
        pass  # a read-only cache costs speed, not correctness
    return result


def cached_content_hash(
    root: Path | str, files: Sequence[TreeFile], cache_root: Path, digest_file: DigestFunction | None = None
) -> str:
    """The tree hash of `cached_manifest(...)`."""
    return cached_manifest(root, files, cache_root, digest_file).tree_hash()
