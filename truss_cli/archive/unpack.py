"""Unpacking a pushed archive on the control plane (the receiving side of `truss_cli.archive.format`).

An archive comes from the network, so it is read as hostile. Every header is checked, and
the manifest with it, before anything is written: a member that is not a plain file or a
link to a directory inside the tree, a path that could leave the destination, a duplicate,
a name that is not UTF-8, a total over the limits, or a manifest path nobody can supply is
refused with an ArchiveError naming the member. tarfile's own extraction is never used:
files are written here, with the manifest's mode (no setuid, no owner) and O_NOFOLLOW, and
links are made last, so no file is ever written through one. A content that does not match
its manifest entry is found while writing, into a staging directory that is then removed:
`destination` appears whole and checked, or not at all.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import posixpath
import tarfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from truss_cli.archive.format import FILES_PREFIX, MANIFEST_MEMBER, MAX_MANIFEST_BYTES, ArchiveError, Limits, format_size
from truss_cli.paths import atomic_directory
from truss_cli.sync.manifest import LINK_MODE, Manifest, ManifestError, link_entry

__all__ = ["BlobSource", "unpack_archive"]

# Where contents the archive does not carry come from: a digest -> a stored file, or None.
BlobSource = Callable[[str], "Path | None"]

_CHUNK = 1 << 20
_MISSING_SHOWN = 5


@dataclass(frozen=True)
class _Checked:
    manifest: Manifest
    files: dict[str, tarfile.TarInfo]  # manifest path -> regular-file member
    links: dict[str, str]  # manifest path -> link target


def unpack_archive(
    archive: Path | BinaryIO,
    destination: Path | str,
    limits: Limits = Limits(),
    blobs: BlobSource | None = None,
    expected_tree_hash: str | None = None,
) -> Manifest:
    """Unpack `archive` into the new directory `destination` and return the tree's manifest.

    `archive` is a file (a path, or a seekable binary file): headers are read through once
    before any content, so an upload is saved to disk first (where its checksum is checked).

    Paths of the manifest that the archive leaves out are filled from `blobs` (or from
    another path of the archive with the same content). With `expected_tree_hash` (what the
    client said it sends), an archive of another tree is refused.
    """
    destination = Path(destination)
    if destination.exists() and (not destination.is_dir() or any(destination.iterdir())):
        raise ArchiveError(f"{destination}: already exists (unpacking needs a new directory)")
    try:
        with _open(archive) as tar:
            checked = _check_members(tar, limits)
            if expected_tree_hash is not None and checked.manifest.tree_hash() != expected_tree_hash:
                raise ArchiveError(
                    f"archive: holds tree {checked.manifest.tree_hash()}, expected {expected_tree_hash}"
                )
            sources = _plan_sources(checked, blobs)
            with atomic_directory(destination) as staging:
                _write_tree(tar, checked, sources, staging)
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise ArchiveError(f"archive: not a readable gzip-compressed tar archive ({exc})") from None
    return checked.manifest


def _open(archive: Path | BinaryIO) -> tarfile.TarFile:
    # surrogateescape keeps a non-UTF-8 name recognisable (as lone surrogates) so it is refused.
    options = {"mode": "r:gz", "encoding": "utf-8", "errors": "surrogateescape"}
    if isinstance(archive, (str, Path)):
        return tarfile.open(name=archive, **options)
    return tarfile.open(fileobj=archive, **options)


def _check_members(tar: tarfile.TarFile, limits: Limits) -> _Checked:
    manifest: Manifest | None = None
    files: dict[str, tarfile.TarInfo] = {}
    links: dict[str, str] = {}
    total = 0
    for member in tar:  # headers only: contents are read later, and only what is checked
        name = _member_name(member)
        if manifest is None:
            manifest = _read_manifest(tar, member, name)
            if len(manifest) > limits.max_files:
                raise ArchiveError(f"archive: {len(manifest)} files, over the limit of {limits.max_files}")
            continue
        path = _tree_path(name)
        if not (member.isreg() or member.issym()):
            raise ArchiveError(f"archive: {name}: {_kind(member)}; an archive holds only files and links")
        if path in files or path in links:
            raise ArchiveError(f"archive: {name}: appears twice")
        entry = manifest.get(path)
        if entry is None:
            raise ArchiveError(f"archive: {name}: not in the archive's manifest")
        if member.isreg():
            if entry.mode == LINK_MODE:
                raise ArchiveError(f"archive: {name}: a file, but the manifest says a link")
            total += member.size
            if total > limits.max_bytes:
                raise ArchiveError(
                    f"archive: more than {format_size(limits.max_bytes)} of files (the limit), at {name}"
                )
            files[path] = member
        else:
            _check_link(name, path, member.linkname)
            if entry != link_entry(member.linkname):
                raise ArchiveError(f"archive: {name}: a link to {member.linkname!r}, which its manifest entry does not say")
            links[path] = member.linkname
    if manifest is None:
        raise ArchiveError(f"archive: empty (expected {MANIFEST_MEMBER} first)")
    _check_layout(manifest)
    return _Checked(manifest, files, links)


def _member_name(member: tarfile.TarInfo) -> str:
    name = member.name
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        shown = name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        raise ArchiveError(f"archive: {shown}: the name is not valid UTF-8") from None
    if name.startswith("/") or "\0" in name:
        raise ArchiveError(f"archive: {name}: an absolute path")
    if any(part in ("", ".", "..") for part in name.split("/")):
        raise ArchiveError(f"archive: {name}: a path with an empty, \".\" or \"..\" part")
    return name


def _read_manifest(tar: tarfile.TarFile, member: tarfile.TarInfo, name: str) -> Manifest:
    if name != MANIFEST_MEMBER or not member.isreg():
        raise ArchiveError(f"archive: {name}: expected {MANIFEST_MEMBER} (a file) first")
    if member.size > MAX_MANIFEST_BYTES:
        raise ArchiveError(f"archive: {name}: {format_size(member.size)}, over {format_size(MAX_MANIFEST_BYTES)}")
    content = tar.extractfile(member)
    assert content is not None  # a regular file always has content
    try:
        return Manifest.from_json(content.read())
    except ManifestError as exc:
        raise ArchiveError(f"archive: {name}: {exc}") from None


def _tree_path(name: str) -> str:
    if not name.startswith(FILES_PREFIX):
        raise ArchiveError(f"archive: {name}: outside {FILES_PREFIX} (where a tree's files are)")
    return name[len(FILES_PREFIX):]


def _check_link(name: str, path: str, target: str) -> None:
    try:
        target.encode("utf-8")
    except UnicodeEncodeError:
        raise ArchiveError(f"archive: {name}: a link whose target is not valid UTF-8") from None
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(path), target))
    if target.startswith("/") or "\0" in target or resolved == ".." or resolved.startswith("../"):
        raise ArchiveError(f"archive: {name}: a link to {target!r}, outside the tree")


def _kind(member: tarfile.TarInfo) -> str:
    if member.islnk():
        return f"a hard link to {member.linkname!r}"
    if member.ischr() or member.isblk():
        return "a device file"
    if member.isfifo():
        return "a FIFO"
    if member.isdir():
        return "a directory entry"
    return f"an entry of type {member.type!r}"


def _check_layout(manifest: Manifest) -> None:
    """Refuse a manifest no directory can hold: a path under a file, or under a link."""
    for path in manifest:
        parts = path.split("/")
        for depth in range(1, len(parts)):
            parent = "/".join(parts[:depth])
            if parent in manifest:
                what = "a link" if manifest[parent].mode == LINK_MODE else "a file"
                raise ArchiveError(f"archive: manifest: {path}: under {parent}, which is {what}")


def _plan_sources(checked: _Checked, blobs: BlobSource | None) -> dict[str, Path | str]:
    """Where each manifest path the archive leaves out comes from: a stored blob, or another
    path of the archive with the same content. Refuses, naming them, when nobody has some."""
    in_archive = {checked.manifest[path].sha256: path for path in checked.files}
    sources: dict[str, Path | str] = {}
    missing = []
    for path, entry in sorted(checked.manifest.items()):
        if path in checked.files or path in checked.links:
            continue
        if entry.mode == LINK_MODE:
            missing.append(path)
            continue
        source = in_archive.get(entry.sha256)
        stored = blobs(entry.sha256) if source is None and blobs is not None else None
        if source is None and stored is None:
            missing.append(path)
        else:
            sources[path] = stored if stored is not None else source  # type: ignore[assignment]
    if missing:
        shown = ", ".join(missing[:_MISSING_SHOWN]) + (", ..." if len(missing) > _MISSING_SHOWN else "")
        raise ArchiveError(f"archive: {len(missing)} files of the manifest are neither in it nor stored: {shown}")
    return sources


def _write_tree(tar: tarfile.TarFile, checked: _Checked, sources: dict[str, Path | str], root: Path) -> None:
    manifest = checked.manifest
    for path, member in checked.files.items():
        content = tar.extractfile(member)
        assert content is not None
        digest = _write_file(root, path, manifest[path].mode, content)
        if digest != manifest[path].sha256:
            raise ArchiveError(f"archive: {FILES_PREFIX}{path}: its content does not match its manifest entry")
    for path, source in sources.items():
        origin = root / source if isinstance(source, str) else source
        with open(origin, "rb") as content:
            _write_file(root, path, manifest[path].mode, content)
    for path, target in checked.links.items():
        link = root / path
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, link)
    # Each link was checked by its own text; a chain (a link through a link) is checked as
    # the filesystem resolves it, now that all of them exist.
    real_root = os.path.realpath(root)
    for path in checked.links:
        resolved = os.path.realpath(root / path)
        if resolved != real_root and not resolved.startswith(real_root + os.sep):
            raise ArchiveError(f"archive: {FILES_PREFIX}{path}: a link that leads outside the tree")


def _write_file(root: Path, path: str, mode: int, content: BinaryIO) -> str:
    target = root / path
    target.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    digest = hashlib.sha256()
    handle = os.open(target, flags, mode & 0o777)
    with os.fdopen(handle, "wb") as output:
        while chunk := content.read(_CHUNK):
            digest.update(chunk)
            output.write(chunk)
    os.chmod(target, mode & 0o777)  # the umask does not decide whether a script runs
    return digest.hexdigest()
