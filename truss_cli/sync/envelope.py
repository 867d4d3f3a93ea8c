"""The envelope a patch travels in: an uncompressed POSIX tar holding `patch.json` first, then
one `blobs/<sha256>` member per file content the receiver needs (docs/live-reload.md).

Why tar: the standard library reads and writes it as a stream, so neither side holds a large
file in memory or base64-inflates it (Truss inlines binaries in JSON), and naming each blob by
its digest lets the receiver check every byte it writes.

The reader treats the stream as hostile: members are read only by name pattern (a member's
name never becomes a path), links, directories and any other member are refused, each blob is
hashed while it is copied and refused when its bytes do not match its name, and the whole
stream is capped at `max_bytes`. Nothing is written outside `blob_dir`.

Standard library only: it ships in every replica's server bundle.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tarfile
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Mapping, Union

from truss_cli.sync import patch

DOCUMENT_NAME = "patch.json"
BLOB_PREFIX = "blobs/"
CONTENT_TYPE = "application/x-tar"
# patch.json describes changes, not contents: a few MiB is already a very large patch.
MAX_DOCUMENT_BYTES = 8 * 1024 * 1024
_DIGEST = re.compile(r"[0-9a-f]{64}")
_CHUNK = 1 << 20

Blob = Union[bytes, str, os.PathLike]


class EnvelopeError(ValueError):
    """An envelope that cannot be used; the message names the member and the problem."""


def check_relative_path(path: Any) -> str:
    """`path` if it is a relative, "/"-separated path inside a tree; EnvelopeError otherwise
    (the one rule of `sync.patch.check_relative_path`, raised as this module's error)."""
    try:
        return patch.check_relative_path(path)
    except patch.PatchError as exc:
        raise EnvelopeError(f"not a path inside the tree: {exc}") from None


def write_envelope(out: BinaryIO, document: Mapping[str, Any], blobs: Mapping[str, Blob]) -> None:
    """Write `document` as patch.json, then each blob (`sha256 -> bytes or a file path`).

    Members carry no owner, time or mode of the sender's machine: the same patch is the same
    bytes. A file that changes between being hashed and being sent is caught by the reader.
    """
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        data = json.dumps(document, sort_keys=True).encode("utf-8")
        tar.addfile(_member(DOCUMENT_NAME, len(data)), io.BytesIO(data))
        for digest in sorted(blobs):
            if not _DIGEST.fullmatch(digest):
                raise EnvelopeError(f"blob {digest!r}: expected a sha256 as 64 lowercase hex digits")
            blob = blobs[digest]
            if isinstance(blob, bytes):
                tar.addfile(_member(BLOB_PREFIX + digest, len(blob)), io.BytesIO(blob))
            else:
                with open(blob, "rb") as handle:
                    size = os.fstat(handle.fileno()).st_size
                    tar.addfile(_member(BLOB_PREFIX + digest, size), handle)


def envelope_bytes(document: Mapping[str, Any], blobs: Mapping[str, Blob]) -> bytes:
    """The whole envelope in memory (small patches, tests)."""
    buffer = io.BytesIO()
    write_envelope(buffer, document, blobs)
    return buffer.getvalue()


def read_envelope(stream: BinaryIO, blob_dir: Path, max_bytes: int) -> dict:
    """Read an envelope from `stream`: return patch.json's object, write each blob to
    `blob_dir/<sha256>` (verified). Raises EnvelopeError for anything else; blobs already
    written stay (they are content-addressed, so a later envelope may reuse them)."""
    blob_dir = Path(blob_dir)
    counted = _CountingReader(stream, max_bytes)
    document: Any = None
    try:
        with tarfile.open(fileobj=counted, mode="r|") as tar:
            for member in tar:
                name = member.name
                if document is None:
                    if name != DOCUMENT_NAME or not member.isreg():
                        raise EnvelopeError(f"the first member must be the file {DOCUMENT_NAME}, not {name!r}")
                    document = _read_document(tar, member)
                    continue
                if not member.isreg():
                    raise EnvelopeError(f"member {name!r}: only regular files are allowed (no links or directories)")
                digest = name[len(BLOB_PREFIX):] if name.startswith(BLOB_PREFIX) else ""
                if not _DIGEST.fullmatch(digest):
                    raise EnvelopeError(f"member {name!r}: expected {BLOB_PREFIX}<sha256 as 64 lowercase hex digits>")
                _write_blob(tar, member, digest, blob_dir)
    except tarfile.TarError as exc:
        raise EnvelopeError(f"not a tar envelope ({exc})") from None
    if document is None:
        raise EnvelopeError(f"empty envelope: expected {DOCUMENT_NAME} first")
    return document


def _member(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o644
    info.mtime = 0
    return info


def _read_document(tar: tarfile.TarFile, member: tarfile.TarInfo) -> dict:
    if member.size > MAX_DOCUMENT_BYTES:
        raise EnvelopeError(f"{DOCUMENT_NAME}: {member.size} bytes, more than the {MAX_DOCUMENT_BYTES} allowed")
    handle = tar.extractfile(member)
    assert handle is not None  # a regular file
    try:
        document = json.loads(handle.read().decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise EnvelopeError(f"{DOCUMENT_NAME}: not UTF-8 JSON ({exc})") from None
    if not isinstance(document, dict):
        raise EnvelopeError(f"{DOCUMENT_NAME}: expected a JSON object, got {type(document).__name__}")
    return document


def _write_blob(tar: tarfile.TarFile, member: tarfile.TarInfo, digest: str, blob_dir: Path) -> None:
    handle = tar.extractfile(member)
    assert handle is not None
    blob_dir.mkdir(parents=True, exist_ok=True)
    hasher = hashlib.sha256()
    descriptor, temporary = tempfile.mkstemp(prefix=".incoming-", dir=blob_dir)
    try:
        with os.fdopen(descriptor, "wb") as output:
            while True:
                chunk = handle.read(_CHUNK)
                if not chunk:
                    break
                hasher.update(chunk)
                output.write(chunk)
        if hasher.hexdigest() != digest:
            raise EnvelopeError(f"member {member.name!r}: its bytes hash to {hasher.hexdigest()}, not to its name")
        os.replace(temporary, blob_dir / digest)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise


class _CountingReader(io.RawIOBase):
    """`stream`, refusing to give more than `limit` bytes in all (the envelope's size cap)."""

    def __init__(self, stream: BinaryIO, limit: int) -> None:
        self._stream = stream
        self._limit = limit
        self._count = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = self._limit + 1 - self._count
        data = self._stream.read(max(0, min(size, self._limit + 1 - self._count)))
        self._count += len(data)
        if self._count > self._limit:
            raise EnvelopeError(f"the envelope is larger than the {self._limit} bytes allowed")
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)
