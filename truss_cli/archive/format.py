"""The archive layout both sides agree on, its limits, and its one error type.

An archive is a gzip-compressed tar (PAX format) holding, in this order:

    manifest.json          the whole tree's manifest (`truss_cli.sync.manifest`)
    files/<path>           a regular file, or a symbolic link for a LINK_MODE entry,
                           for some or all of the manifest's paths, in ascending path order

The manifest names every path of the tree; an archive may carry only the files whose
contents the receiver lacks (it fills in the rest from its blob store), so a push of a
barely changed tree sends only what changed. Each file's content must match its manifest
entry, so the manifest is the tree: a receiver never trusts a member it cannot check.

Packing is deterministic (sorted members, mtime 0, uid/gid 0, no user names, gzip header
without a name or time), so one tree packs to the same bytes, and the same sha256, with a
given zlib. The sha256 of the archive is a transfer checksum; what identifies a tree is its
tree hash.
"""

from __future__ import annotations

from dataclasses import dataclass

from truss_cli.errors import TrussError

MANIFEST_MEMBER = "manifest.json"
FILES_PREFIX = "files/"

# A model's weights usually arrive through external_data or at load time, not in the
# directory: 2 GiB leaves room for small checkpoints and catches an accidental dataset.
DEFAULT_MAX_BYTES = 2 << 30
DEFAULT_MAX_FILES = 100_000
# The manifest of DEFAULT_MAX_FILES paths stays well under this.
MAX_MANIFEST_BYTES = 64 << 20


class ArchiveError(TrussError):
    """An archive (or a tree to pack) that cannot be used; the message names what and why."""

    exit_code = 2


@dataclass(frozen=True)
class Limits:
    """What one archive may hold: total bytes of file content and number of files."""

    max_bytes: int = DEFAULT_MAX_BYTES
    max_files: int = DEFAULT_MAX_FILES

    def __post_init__(self) -> None:
        if self.max_bytes < 0 or self.max_files < 0:
            raise ValueError(f"archive limits must not be negative: {self}")


def format_size(count: int) -> str:
    """Bytes as a person reads them: `512 B`, `3.0 KiB`, `2.5 GiB`."""
    for unit, factor in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if count >= factor:
            return f"{count / factor:.1f} {unit}"
    return f"{count} B"
