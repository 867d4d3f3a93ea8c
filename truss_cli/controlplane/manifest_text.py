"""The stored text of a manifest, spliced per patch instead of serialised whole.

A patch point is kept as its manifest's JSON (`Manifest.to_json()`, a blob like any file).
Serialising it is O(tree): ~8 ms at 5,000 files, most of a patch's staging on such a tree,
for a save that changed one line. `ManifestText` holds the text as its sorted entries, so the
text of the tree after a patch is its base's with the changed entries replaced, inserted or
removed (a bisect each) and one join: byte for byte what `to_json()` writes (the tests check),
so a tree's manifest blob is the same whichever way it was made.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Mapping
from json.encoder import encode_basestring_ascii  # what json.dumps uses for a str (ensure_ascii)

from truss_cli.sync.manifest import FORMAT_VERSION, Entry, Manifest

_HEAD = '{"files": {'
_TAIL = '}, "format": %d}' % FORMAT_VERSION


class ManifestText:
    __slots__ = ("_paths", "_entries")

    def __init__(self, paths: list[str], entries: list[str]) -> None:
        self._paths = paths  # sorted, as json.dumps(sort_keys=True) orders them
        self._entries = entries  # '"path": {"mode": ..., "sha256": "..."}', same order

    @classmethod
    def of(cls, manifest: Manifest) -> "ManifestText":
        pairs = sorted(manifest.items())
        return cls([path for path, _ in pairs], [_entry(path, entry) for path, entry in pairs])

    def with_changes(self, changes: Mapping[str, Entry | None]) -> "ManifestText":
        """The text after `changes` (path -> Entry, None = deleted; a delete of a path not
        here is ignored: the caller checked the patch against the manifest already)."""
        paths, entries = list(self._paths), list(self._entries)
        for path, entry in changes.items():
            index = bisect_left(paths, path)
            present = index < len(paths) and paths[index] == path
            if entry is None:
                if present:
                    del paths[index], entries[index]
            elif present:
                entries[index] = _entry(path, entry)
            else:
                paths.insert(index, path)
                entries.insert(index, _entry(path, entry))
        return ManifestText(paths, entries)

    def __len__(self) -> int:
        return len(self._paths)

    def encode(self) -> bytes:
        return (_HEAD + ", ".join(self._entries) + _TAIL).encode("ascii")


def _entry(path: str, entry: Entry) -> str:
    return '%s: {"mode": %d, "sha256": "%s"}' % (encode_basestring_ascii(path), entry.mode, entry.sha256)
