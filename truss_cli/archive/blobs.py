"""File contents kept by their sha256 on the control plane, so a push sends only new ones.

`lacking` answers the client's "which of these do you lack" with one `stat` per digest and
no reads. Contents are written to a temporary name and renamed, so a reader (or a crash)
never sees half a blob, and two pushes adding the same content both succeed.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

from truss_cli.archive.format import ArchiveError
from truss_cli.sync.manifest import LINK_MODE, Manifest

_HEX_DIGITS = frozenset("0123456789abcdef")


def check_digest(digest: object) -> str:
    """`digest` if it is 64 lowercase hex digits (a sha256), else an ArchiveError naming it."""
    if not isinstance(digest, str) or len(digest) != 64 or not _HEX_DIGITS.issuperset(digest):
        raise ArchiveError(f"{digest!r}: not a sha256 digest (expected 64 lowercase hex digits)")
    return digest


class BlobDirectory:
    """Contents at `root/<first two hex digits>/<sha256>` (a fan-out keeps directories small)."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def path(self, digest: str) -> Path:
        check_digest(digest)
        return self.root / digest[:2] / digest

    def find(self, digest: str) -> Path | None:
        """The stored content `digest`, or None. (`unpack_archive` takes this as its blob source.)"""
        path = self.path(digest)
        return path if path.is_file() else None

    def lacking(self, digests: Iterable[str]) -> list[str]:
        """The distinct `digests` not stored here, sorted."""
        return sorted({digest for digest in digests if self.find(digest) is None})

    def add(self, source: Path | str, digest: str) -> Path:
        """Store the file `source`, whose sha256 the caller has checked is `digest`."""
        target = self.path(digest)
        if target.is_file():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{digest[:12]}.", dir=target.parent)
        try:
            with os.fdopen(handle, "wb") as output, open(source, "rb") as content:
                shutil.copyfileobj(content, output, 1 << 20)
            os.chmod(temporary, 0o444)  # a blob is never changed in place
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return target

    def add_tree(self, root: Path | str, manifest: Manifest) -> int:
        """Store the contents of an unpacked tree that are not stored yet; returns how many were added."""
        added = 0
        for path, entry in sorted(manifest.items()):
            if entry.mode != LINK_MODE and self.find(entry.sha256) is None:
                self.add(Path(root, path), entry.sha256)
                added += 1
        return added
