"""The tree manifest: path -> (sha256, mode) for every file of a model directory, and the one
definition of a tree's hash.

The CLI builds a manifest from the files `truss_cli.tree` lists; an image build names its
image by the tree hash, and later `truss push` and a development replica compare hashes to
know whether they hold the same tree. They can only agree if all of them compute the hash
from the same bytes, so those bytes are defined here once:

    b"truss-tree-v1\\n"
    then, for each entry in ascending order of its path's UTF-8 bytes:
    b"%06o %s %s\\0" % (mode, sha256 as 64 lowercase hex digits, path as UTF-8)

and the tree hash is the sha256 of that, as 64 lowercase hex digits. The mode and the digest
have a fixed width and a path cannot contain NUL, so the encoding is unambiguous.

Modes are normalised as git does, so that a umask or a checkout on another machine does
not change the hash: FILE_MODE (0o100644), EXECUTABLE_MODE (0o100755) when any execute bit
is set, LINK_MODE (0o120000) for a symbolic link to a directory inside the tree, whose
"content" is its target path (relative, as UTF-8).

Paths are relative, "/"-separated, without "." or ".." parts. Names that are not valid UTF-8
(possible on Linux) are carried with Python's surrogateescape, so they hash as their bytes.

Standard library only: this module ships in every replica's server bundle.
"""

from __future__ import annotations

import bisect
import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FORMAT_VERSION = 1
_HASH_HEADER = b"truss-tree-v1\n"

FILE_MODE = 0o100644
EXECUTABLE_MODE = 0o100755
LINK_MODE = 0o120000
MODES = frozenset({FILE_MODE, EXECUTABLE_MODE, LINK_MODE})

_READ_CHUNK = 1 << 20
_SMALL_FILE = 64 << 10
_HEX_DIGITS = frozenset("0123456789abcdef")


class ManifestError(ValueError):
    """A manifest that does not follow the format; the message says which entry and why."""


@dataclass(frozen=True)
class Entry:
    sha256: str  # 64 lowercase hex digits
    mode: int  # one of MODES


def file_mode(executable: bool) -> int:
    return EXECUTABLE_MODE if executable else FILE_MODE


def link_entry(target: str) -> Entry:
    """The entry of a symbolic link to a directory: its target text is its content."""
    return Entry(hashlib.sha256(_encode(target)).hexdigest(), LINK_MODE)


class Manifest(Mapping[str, Entry]):
    """An immutable mapping of relative path -> Entry, with its tree hash."""

    def __init__(self, entries: Mapping[str, Entry] | None = None) -> None:
        checked: dict[str, Entry] = {}
        for path, entry in (entries or {}).items():
            _check_path(path)
            _check_entry(path, entry)
            checked[path] = entry
        self._entries = checked
        self._hash: str | None = None
        # The hashed bytes, cached once computed: the entries' encoded paths in ascending
        # order and, in the same order, their lines. `with_changes` splices a few lines
        # into copies of these instead of encoding, sorting and formatting every entry again.
        self._order: list[bytes] | None = None
        self._lines: list[bytes] | None = None

    def __getitem__(self, path: str) -> Entry:
        return self._entries[path]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Manifest):
            return self._entries == other._entries
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.tree_hash())

    def __repr__(self) -> str:
        return f"Manifest({len(self)} entries, tree hash {self.tree_hash()[:12]})"

    def tree_hash(self) -> str:
        """The sha256 of the manifest's canonical bytes (see the module docstring)."""
        if self._hash is None:
            _, lines = self._sorted_lines()
            self._hash = hashlib.sha256(_HASH_HEADER + b"".join(lines)).hexdigest()
        return self._hash

    def with_changes(self, changes: Mapping[str, "Entry | None"]) -> "Manifest":
        """The manifest after `changes` (path -> new Entry, or None for a deleted path).

        Cost is proportional to the number of changes plus a copy of this manifest's cached
        lines (a memory copy, not a re-encoding), so a watcher can advance its tree hash per
        save without redoing the whole tree. Deleting a path that is not here is an error:
        the two sides of a patch disagree about the tree, and saying so early beats a hash
        mismatch later.
        """
        if not changes:
            return self
        entries = dict(self._entries)
        order, lines = self._sorted_lines()
        order, lines = list(order), list(lines)
        for path, entry in changes.items():
            _check_path(path)
            encoded = _encode(path)
            index = bisect.bisect_left(order, encoded)
            present = index < len(order) and order[index] == encoded
            if entry is None:
                if not present:
                    raise ManifestError(f"manifest: {path}: deleted, but it is not in the tree")
                del entries[path]
                del order[index]
                del lines[index]
                continue
            _check_entry(path, entry)
            entries[path] = entry
            if present:
                lines[index] = _line(entry, encoded)
            else:
                order.insert(index, encoded)
                lines.insert(index, _line(entry, encoded))
        result = Manifest.__new__(Manifest)
        result._entries = entries
        result._hash = None
        result._order = order
        result._lines = lines
        return result

    def _sorted_lines(self) -> tuple[list[bytes], list[bytes]]:
        if self._order is None or self._lines is None:
            pairs = sorted((_encode(path), entry) for path, entry in self._entries.items())
            self._order = [encoded for encoded, _ in pairs]
            self._lines = [_line(entry, encoded) for encoded, entry in pairs]
        return self._order, self._lines

    def to_json(self) -> str:
        """`{"format": 1, "files": {path: {"sha256": ..., "mode": ...}}}`, paths sorted.

        Modes are written as integers (JSON has no octal). Non-UTF-8 names come out as
        `\\udcXX` escapes, which `from_json` reads back to the same path.
        """
        files = {path: {"sha256": entry.sha256, "mode": entry.mode} for path, entry in sorted(self._entries.items())}
        return json.dumps({"format": FORMAT_VERSION, "files": files}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> "Manifest":
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ManifestError(f"manifest: not JSON ({exc})") from None
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: Any) -> "Manifest":
        if not isinstance(data, dict) or data.get("format") != FORMAT_VERSION:
            found = data.get("format") if isinstance(data, dict) else type(data).__name__
            raise ManifestError(f"manifest: expected an object with \"format\": {FORMAT_VERSION}, got {found!r}")
        files = data.get("files")
        if not isinstance(files, dict):
            raise ManifestError("manifest: files: expected an object of path -> {sha256, mode}")
        entries = {}
        for path, item in files.items():
            if not isinstance(item, dict) or set(item) != {"sha256", "mode"}:
                raise ManifestError(f"manifest: files.{path}: expected an object with exactly sha256 and mode")
            entries[path] = Entry(item["sha256"], item["mode"])
        return cls(entries)


def sha256_file(path: Path | str) -> bytes:
    """The sha256 digest of one file's content, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb", buffering=0) as handle:
        # Most model files are small (code, configs): read them whole rather than allocate
        # (and zero) a 1 MiB buffer per file, which cost more than the hashing.
        # (A short read is EOF for a local file, but only an empty one is sure to be.)
        head = handle.read(_SMALL_FILE)
        digest.update(head)
        if len(head) < _SMALL_FILE:
            rest = handle.read(_SMALL_FILE)
            if not rest:
                return digest.digest()
            digest.update(rest)
        buffer = bytearray(_READ_CHUNK)
        view = memoryview(buffer)
        while True:
            count = handle.readinto(buffer)
            if not count:
                break
            digest.update(view[:count])
    return digest.digest()


def _encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def _line(entry: Entry, encoded_path: bytes) -> bytes:
    return b"%06o %s %s\0" % (entry.mode, entry.sha256.encode("ascii"), encoded_path)


def _check_path(path: Any) -> None:
    if not isinstance(path, str) or not path:
        raise ManifestError(f"manifest: {path!r}: expected a non-empty relative path")
    parts = path.split("/")
    if path.startswith("/") or "\0" in path or any(part in ("", ".", "..") for part in parts):
        raise ManifestError(f"manifest: {path!r}: expected a relative path with \"/\" separators and no \".\" or \"..\" parts")


def _check_entry(path: str, entry: Any) -> None:
    if not isinstance(entry, Entry):
        raise ManifestError(f"manifest: {path}: expected an Entry, got {type(entry).__name__}")
    digest = entry.sha256
    if not isinstance(digest, str) or len(digest) != 64 or not _HEX_DIGITS.issuperset(digest):
        raise ManifestError(f"manifest: {path}: sha256: expected 64 lowercase hex digits, got {digest!r}")
    mode = entry.mode
    if not isinstance(mode, int) or isinstance(mode, bool) or mode not in MODES:
        allowed = ", ".join(f"{known:o}" for known in sorted(MODES))
        shown = f"{mode:o}" if isinstance(mode, int) and not isinstance(mode, bool) else repr(mode)
        raise ManifestError(f"manifest: {path}: mode: expected one of {allowed} (octal), got {shown}")
