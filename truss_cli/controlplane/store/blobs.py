"""Content-addressed archives on disk: `<root>/sha256/ab/abcdef...`.

A blob appears under its final name only complete and verified: bytes stream into a temporary
file in `<root>/tmp/` while being hashed, and only a matching digest is fsynced and renamed
into place (then the directory is fsynced, so the name survives a power cut too). A killed
writer leaves at most a temporary file, which no read looks at and `sweep` removes.

A writer that stores several blobs before committing something that names them (a patch:
its blobs, its manifest, then the database row) passes a `SyncBatch` instead: each blob is
renamed into place unsynced, and `batch.flush()` fsyncs every file, then every directory,
once, before the caller commits. What the row names is durable either way; a power cut
before the flush can leave a blob file with lost content under its name, but then the row
that would name it was never written (and `verify` / `sweep` see the blob for what it is).

Unused blobs are swept (not reference-counted): counts kept in the database could not change
in the same transaction as a file on disk, whereas "used" is derived from the rows and the
trees' manifests at sweep time (`Trees.sweep`), so a crash anywhere leaves nothing to repair.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from truss_cli.controlplane.store.errors import NotFound, StoreError

_DIGEST = re.compile(r"^[0-9a-f]{64}$")
_CHUNK = 1 << 20


class DigestMismatch(StoreError):
    """The bytes received do not hash to the digest the client claimed."""


class TooLarge(StoreError):
    """The upload is over the size limit."""


def check_digest(digest: str) -> str:
    if not isinstance(digest, str) or not _DIGEST.match(digest):
        raise StoreError(f"not a sha256 digest (64 lowercase hex digits): {digest!r}")
    return digest


class BlobWriter:
    """An upload in progress; usable chunk by chunk from an async route."""

    def __init__(self, store: "BlobStore", digest: str, max_bytes: int | None):
        self._store = store
        self.digest = check_digest(digest)
        self._max_bytes = max_bytes
        self._hash = hashlib.sha256()
        self.size = 0
        store._tmp.mkdir(parents=True, exist_ok=True)
        self._tmp_path = store._tmp / f"{digest[:16]}.{secrets.token_hex(8)}.part"
        self._file: BinaryIO | None = open(self._tmp_path, "xb")

    def write(self, chunk: bytes) -> None:
        assert self._file is not None, "the upload is finished"
        self.size += len(chunk)
        if self._max_bytes is not None and self.size > self._max_bytes:
            self.abort()
            raise TooLarge(f"the upload is over the limit of {self._max_bytes} bytes")
        self._hash.update(chunk)
        self._file.write(chunk)

    def commit(self, batch: "SyncBatch | None" = None) -> Path:
        """Verify, then publish under the final name; a mismatch leaves nothing behind.
        With `batch`, the fsyncs are the batch's (module docstring)."""
        assert self._file is not None, "the upload is finished"
        actual = self._hash.hexdigest()
        if actual != self.digest:
            self.abort()
            raise DigestMismatch(f"the upload hashes to {actual}, not the claimed {self.digest}")
        self._file.flush()
        if batch is None:
            os.fsync(self._file.fileno())
        self._file.close()
        self._file = None
        return self._store._publish(self._tmp_path, self.digest, batch)

    def abort(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        self._tmp_path.unlink(missing_ok=True)

    def __enter__(self) -> "BlobWriter":
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        # Leaving the block without commit() (an error, a dropped connection) keeps nothing.
        if self._file is not None:
            self.abort()


class BlobStore:
    def __init__(self, root: Path):
        self.root = Path(root)
        self._objects = self.root / "sha256"
        self._tmp = self.root / "tmp"

    def path(self, digest: str) -> Path:
        check_digest(digest)
        return self._objects / digest[:2] / digest

    def has(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def find(self, digest: str) -> Path | None:
        """The stored content `digest`, or None (what `unpack_archive` takes as its blob source)."""
        path = self.path(digest)
        return path if path.is_file() else None

    def missing(self, digests: Iterable[str]) -> list[str]:
        """Of `digests`, those not stored (sorted, once each): what a client must upload.

        The ones present are touched, so `sweep` gives them a new grace period: the client
        will not upload them and its deployment does not reference them yet."""
        lacking = set()
        for digest in set(map(check_digest, digests)):
            try:
                os.utime(self.path(digest))
            except FileNotFoundError:
                lacking.add(digest)
        return sorted(lacking)

    def writer(self, digest: str, max_bytes: int | None = None) -> BlobWriter:
        return BlobWriter(self, digest, max_bytes)

    def write(self, source: BinaryIO | Iterable[bytes], digest: str, max_bytes: int | None = None,
              batch: "SyncBatch | None" = None) -> Path:
        """Store the bytes of `source` (a binary file or chunks) as blob `digest`."""
        chunks: Iterable[bytes] = iter(lambda: source.read(_CHUNK), b"") if hasattr(source, "read") else source  # type: ignore[union-attr]
        with self.writer(digest, max_bytes) as writer:
            for chunk in chunks:
                writer.write(chunk)
            return writer.commit(batch)

    def adopt(self, verified: Path, digest: str, batch: "SyncBatch | None" = None) -> Path:
        """Move the file `verified` into the store as blob `digest`, without reading it again:
        only for a file whose bytes were hashed to `digest` on the way in (`read_envelope`
        checks every blob it writes). Another filesystem: copied and hashed as any write."""
        check_digest(digest)
        self._tmp.mkdir(parents=True, exist_ok=True)
        moved = self._tmp / f"{digest[:16]}.{secrets.token_hex(8)}.part"
        try:
            os.rename(verified, moved)
        except OSError:
            with open(verified, "rb") as content:
                return self.write(content, digest, batch=batch)
        os.chmod(moved, 0o644)  # as a written blob (a verified file may be a private temporary one)
        if batch is None:
            _fsync_file(moved)
        return self._publish(moved, digest, batch)

    def _publish(self, temporary: Path, digest: str, batch: "SyncBatch | None") -> Path:
        final = self.path(digest)
        final.parent.mkdir(parents=True, exist_ok=True)
        # Same digest, same bytes: replacing a blob someone else just finished is harmless.
        os.replace(temporary, final)
        if batch is None:
            _fsync_dir(final.parent)
        else:
            batch.add(final)
        return final

    def open(self, digest: str) -> BinaryIO:
        try:
            return open(self.path(digest), "rb")
        except FileNotFoundError:
            raise NotFound("blob", digest) from None

    def verify(self, digest: str) -> bool:
        """Whether the stored bytes still hash to their name (a disk can rot)."""
        h = hashlib.sha256()
        with self.open(digest) as f:
            for chunk in iter(lambda: f.read(_CHUNK), b""):
                h.update(chunk)
        return h.hexdigest() == digest

    def digests(self) -> Iterator[str]:
        if not self._objects.is_dir():
            return
        for shard in sorted(self._objects.iterdir()):
            for entry in sorted(shard.iterdir()):
                if _DIGEST.match(entry.name):
                    yield entry.name

    def sweep(self, keep: set[str], grace_seconds: float = 3600.0) -> list[str]:
        """Delete the blobs not in `keep` and abandoned temporary files, both only when older
        than `grace_seconds`: a client uploads before it creates the deployment that points at
        its blobs, and an upload may be in progress. Returns the digests deleted.

        The caller derives `keep` from every tree still in use (controlplane/trees.py: each
        manifest's file digests and the manifest's own), never from tree hashes alone."""
        cutoff = time.time() - grace_seconds
        removed = []
        for digest in list(self.digests()):
            path = self.path(digest)
            if digest not in keep and _mtime(path) < cutoff:
                path.unlink(missing_ok=True)
                removed.append(digest)
        if self._tmp.is_dir():
            for leftover in self._tmp.iterdir():
                if _mtime(leftover) < cutoff:
                    leftover.unlink(missing_ok=True)
        return removed


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return float("inf")


class SyncBatch:
    """Files written unsynced that must be durable before something names them: `flush()`
    fsyncs each file, then each of their directories (the names), once."""

    def __init__(self) -> None:
        self._files: dict[Path, None] = {}  # insertion-ordered, once each

    def add(self, path: Path) -> None:
        self._files[path] = None

    def flush(self) -> None:
        directories = dict.fromkeys(path.parent for path in self._files)
        for path in self._files:
            _fsync_file(path)
        for directory in directories:
            _fsync_dir(directory)
        self._files.clear()


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    _fsync_file(path)  # a directory opened read-only fsyncs the same way
