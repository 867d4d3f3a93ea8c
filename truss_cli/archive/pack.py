"""Packing a model directory for `truss push` (the client side of `truss_cli.archive.format`).

`plan_pack` decides what a push sends: the files `truss_cli.tree` lists (the same ignore
rules and link checks as an image build), their manifest, and the size check. The remote
is then asked which contents it lacks (`PackPlan.digests`), and `write_archive` packs only
those, so a push of an unchanged directory sends nothing and a push of a barely changed
one sends the changed files.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from truss_cli.archive.format import FILES_PREFIX, MANIFEST_MEMBER, ArchiveError, Limits, format_size
from truss_cli.sync.manifest import Manifest
from truss_cli.tree import TreeFile, TreeHasher, cached_manifest, list_files

__all__ = ["ArchiveInfo", "PackPlan", "PackedFile", "ProgressCallback", "plan_pack", "write_archive"]

# Called with the number of file bytes just packed (an increment, not a total).
ProgressCallback = Callable[[int], None]

# Level 1: model files are mostly weights and other incompressible data, where higher levels
# cost several times the CPU for a few percent.
_COMPRESS_LEVEL = 1
_LARGEST_SHOWN = 5
_CHUNK = 1 << 20


@dataclass(frozen=True)
class PackedFile:
    path: str  # relative, "/"-separated: the manifest's key
    source: Path  # where the content is read from
    size: int  # 0 for a link
    sha256: str
    mode: int  # the manifest's mode
    link_target: str | None = None  # for a link to a directory inside the tree


@dataclass(frozen=True)
class PackPlan:
    """What a push of the directory `root` sends, before anything is packed."""

    root: Path
    files: tuple[PackedFile, ...]  # ascending path order
    manifest: Manifest

    @property
    def total_bytes(self) -> int:
        return sum(item.size for item in self.files)

    def digests(self) -> list[str]:
        """The distinct contents of the tree's regular files, sorted: what to ask the remote about."""
        return sorted({item.sha256 for item in self.files if item.link_target is None})

    def to_send(self, lacking: Collection[str] | None = None) -> list[PackedFile]:
        """The entries an archive carries when the remote lacks the contents `lacking`.

        None means the remote has nothing (a full archive). A content found at several paths
        is sent once; links cost nothing and are always sent, so the receiver can check them.
        """
        if lacking is None:
            return list(self.files)
        wanted = set(lacking)
        chosen = []
        for item in self.files:
            if item.link_target is not None:
                chosen.append(item)
            elif item.sha256 in wanted:
                wanted.discard(item.sha256)
                chosen.append(item)
        return chosen

    def largest_first(self, lacking: Collection[str] | None = None) -> list[PackedFile]:
        """`to_send(lacking)` by size, largest first (ties by path): what `--verbose` lists."""
        return sorted(self.to_send(lacking), key=lambda item: (-item.size, item.path))


@dataclass(frozen=True)
class ArchiveInfo:
    sha256: str  # of the archive's bytes: the transfer checksum
    size: int  # the archive's bytes
    files: int  # entries under files/
    content_bytes: int  # their uncompressed size


def plan_pack(
    root: Path | str,
    limits: Limits = Limits(),
    cache_dir: Path | None = None,
    extra_ignore: Sequence[str] = (),
) -> PackPlan:
    """List and hash the tree at `root`, refusing one over `limits` (naming its largest files).

    With `cache_dir` (Settings.cache_dir), per-file digests are kept between pushes, so
    planning an unchanged multi-GB directory again reads no file contents.
    """
    root = Path(root)
    if not root.is_dir():
        raise ArchiveError(f"{root}: not a directory (expected a model directory with config.yaml)")
    listed = list_files(root, extra_ignore)
    for item in listed:
        _check_name(item, root)
    manifest = cached_manifest(root, listed, cache_dir) if cache_dir is not None else TreeHasher().manifest(listed)
    files = tuple(
        PackedFile(
            path=item.relative_path,
            source=item.path,
            size=item.size,
            sha256=manifest[item.relative_path].sha256,
            mode=manifest[item.relative_path].mode,
            link_target=item.link_target,
        )
        for item in listed
    )
    plan = PackPlan(root, files, manifest)
    _check_limits(plan, limits)
    return plan


def write_archive(
    plan: PackPlan,
    destination: BinaryIO,
    lacking: Collection[str] | None = None,
    on_progress: ProgressCallback | None = None,
) -> ArchiveInfo:
    """Write the archive of `plan.to_send(lacking)` to `destination` (a binary file, open for writing).

    Each file is hashed again as it is packed: one that changed since `plan_pack` would not
    match the manifest the remote checks it against, so it is refused here, naming it.
    """
    output = _HashingWriter(destination)
    chosen = plan.to_send(lacking)
    content_bytes = 0
    with gzip.GzipFile(filename="", mode="wb", fileobj=output, compresslevel=_COMPRESS_LEVEL, mtime=0) as zipped:
        with tarfile.open(fileobj=zipped, mode="w", format=tarfile.PAX_FORMAT, encoding="utf-8") as tar:
            manifest_bytes = plan.manifest.to_json().encode("utf-8")
            tar.addfile(_member(MANIFEST_MEMBER, len(manifest_bytes), 0o644), io.BytesIO(manifest_bytes))
            for item in chosen:
                if item.link_target is not None:
                    info = _member(FILES_PREFIX + item.path, 0, 0o777)
                    info.type = tarfile.SYMTYPE
                    info.linkname = item.link_target
                    tar.addfile(info)
                    continue
                _add_file(tar, item, plan.root, on_progress)
                content_bytes += item.size
    return ArchiveInfo(output.digest.hexdigest(), output.count, len(chosen), content_bytes)


def _add_file(tar: tarfile.TarFile, item: PackedFile, root: Path, on_progress: ProgressCallback | None) -> None:
    changed = ArchiveError(
        f"{item.path}: changed while it was being packed (in {root})", hint="push again once it is written"
    )
    try:
        with open(item.source, "rb") as handle:
            reader = _HashingReader(handle, on_progress)
            tar.addfile(_member(FILES_PREFIX + item.path, item.size, item.mode & 0o777), reader)
            if handle.read(1):  # grown since it was listed
                raise changed
    except OSError as exc:  # shrunk ("unexpected end of data"), removed, or unreadable
        if isinstance(exc, (FileNotFoundError, PermissionError)):
            raise ArchiveError(f"{item.path}: cannot be read ({exc.strerror}) in {root}") from None
        raise changed from None
    if reader.digest.hexdigest() != item.sha256:
        raise changed


def _member(name: str, size: int, mode: int) -> tarfile.TarInfo:
    # Everything that could differ between two machines or two runs is fixed.
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = mode
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _check_name(item: TreeFile, root: Path) -> None:
    # The manifest can carry such names, but other systems (and the receiver) cannot store them.
    try:
        item.relative_path.encode("utf-8")
    except UnicodeEncodeError:
        shown = item.relative_path.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        raise ArchiveError(
            f"{shown}: the file name is not valid UTF-8 (in {root})", hint="rename it, or list it in .truss_ignore"
        ) from None


def _check_limits(plan: PackPlan, limits: Limits) -> None:
    total = plan.total_bytes
    if total > limits.max_bytes:
        largest = ", ".join(f"{item.path} ({format_size(item.size)})" for item in plan.largest_first()[:_LARGEST_SHOWN])
        raise ArchiveError(
            f"{plan.root}: {format_size(total)} to send, over the limit of {format_size(limits.max_bytes)}; "
            f"largest: {largest}",
            hint="list what the model does not need in .truss_ignore, fetch large weights with external_data, "
            "or raise the limit",
        )
    if len(plan.files) > limits.max_files:
        raise ArchiveError(
            f"{plan.root}: {len(plan.files)} files to send, over the limit of {limits.max_files}",
            hint="list what the model does not need in .truss_ignore",
        )


class _HashingWriter(io.RawIOBase):
    """Passes writes through, counting and hashing the bytes."""

    def __init__(self, target: BinaryIO) -> None:
        self._target = target
        self.digest = hashlib.sha256()
        self.count = 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:  # type: ignore[no-untyped-def,override]
        view = memoryview(data)
        self._target.write(view)
        self.digest.update(view)
        self.count += view.nbytes
        return view.nbytes


class _HashingReader:
    """What tarfile reads a file's content through: hashed, and reported as progress."""

    def __init__(self, source: BinaryIO, on_progress: ProgressCallback | None) -> None:
        self._source = source
        self._on_progress = on_progress
        self.digest = hashlib.sha256()

    def read(self, size: int = _CHUNK) -> bytes:
        data = self._source.read(size)
        self.digest.update(data)
        if data and self._on_progress is not None:
            self._on_progress(len(data))
        return data
