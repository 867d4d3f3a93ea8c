"""Patches between two trees: what changed (a Delta) and the document a client sends (a Patch).

A Delta maps a path to its new Entry, or to None when the path was deleted. It carries no
"operations" the receiver must trust: the receiver applies it to the manifest it already
holds (`Manifest.with_changes`), recomputes the tree hash and refuses the patch when that
differs from the hash the sender computed (docs/live-reload.md, "Patch").

Every path that crosses a machine boundary is checked with `check_relative_path` before it
is used to write anything.

Standard library only: this module ships in every replica's server bundle.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from truss_cli.sync.manifest import Entry, Manifest, ManifestError

__all__ = [
    "Delta", "Entry", "FORMAT_VERSION", "HOT_RELOAD_CHOICES", "Patch", "PatchError", "check_relative_path", "diff",
]

FORMAT_VERSION = 1
HOT_RELOAD_CHOICES = ("auto", "off")


class PatchError(ValueError):
    """A path, delta or patch document that does not follow the format; the message says why."""


def check_relative_path(path: Any) -> str:
    """`path` itself if it is safe to join under a directory on any side, else a PatchError.

    Refused: a non-string or empty path, an absolute one, a `..`, `.` or empty part (which
    also refuses `a//b` and a trailing `/`), NUL, and backslash (a separator on Windows, and
    never produced by our own listing of a tree: refusing it keeps `a\\..\\b` from meaning
    something on one side and nothing on the other).
    """
    if not isinstance(path, str) or not path:
        raise PatchError(f"{path!r}: expected a non-empty relative path")
    if path.startswith("/"):
        raise PatchError(f"{path!r}: an absolute path; expected a path relative to the model directory")
    if "\0" in path:
        raise PatchError(f"{path!r}: contains NUL")
    if "\\" in path:
        raise PatchError(f"{path!r}: contains a backslash; paths use \"/\" separators")
    for part in path.split("/"):
        if part in ("", ".", ".."):
            raise PatchError(f"{path!r}: has a {part or 'empty'!r} part; expected plain names separated by one \"/\"")
    return path


class Delta(Mapping[str, "Entry | None"]):
    """An immutable path -> Entry (new or changed) | None (deleted) mapping."""

    def __init__(self, changes: Mapping[str, Entry | None] | None = None) -> None:
        checked: dict[str, Entry | None] = {}
        for path, entry in (changes or {}).items():
            check_relative_path(path)
            if entry is not None and not isinstance(entry, Entry):
                raise PatchError(f"{path}: expected an Entry or None, got {type(entry).__name__}")
            checked[path] = entry
        self._changes = checked

    def __getitem__(self, path: str) -> Entry | None:
        return self._changes[path]

    def __iter__(self) -> Iterator[str]:
        return iter(self._changes)

    def __len__(self) -> int:
        return len(self._changes)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Delta):
            return self._changes == other._changes
        return NotImplemented

    def __hash__(self) -> int:
        return hash(frozenset(self._changes.items()))

    def __repr__(self) -> str:
        return f"Delta(puts={sorted(self.puts())}, deletes={sorted(self.deletes())})"

    def puts(self) -> dict[str, Entry]:
        """The paths written (new or changed), with their entries."""
        return {path: entry for path, entry in self._changes.items() if entry is not None}

    def deletes(self) -> list[str]:
        return [path for path, entry in self._changes.items() if entry is None]

    def then(self, later: Mapping[str, Entry | None], base: Mapping[str, Entry]) -> "Delta":
        """This delta followed by `later`, both taken from the tree `base`, as one delta.

        What a watcher sends when several batches of changes arrive while a patch is in
        flight. Entries that bring a path back to what `base` holds drop out (a file created
        and deleted again, an edit undone), so the result is exactly `diff(base, after both)`
        at the cost of the two deltas, not of the tree.
        """
        combined = dict(self._changes)
        for path, entry in later.items():
            combined[path] = entry
        return Delta({path: entry for path, entry in combined.items() if base.get(path) != entry})

    def to_dict(self) -> dict[str, dict[str, Any] | None]:
        return {
            path: None if entry is None else {"sha256": entry.sha256, "mode": entry.mode}
            for path, entry in sorted(self._changes.items())
        }

    @classmethod
    def from_dict(cls, data: Any, where: str = "changes") -> "Delta":
        if not isinstance(data, dict):
            raise PatchError(f"{where}: expected an object of path -> {{sha256, mode}} | null")
        changes: dict[str, Entry | None] = {}
        for path, item in data.items():
            check_relative_path(path)
            if item is None:
                changes[path] = None
                continue
            if not isinstance(item, dict) or set(item) != {"sha256", "mode"}:
                raise PatchError(f"{where}.{path}: expected null or an object with exactly sha256 and mode")
            changes[path] = Entry(item["sha256"], item["mode"])
        try:
            # The manifest's own checks of digests and modes, so both formats agree.
            Manifest({path: entry for path, entry in changes.items() if entry is not None})
        except ManifestError as exc:
            raise PatchError(f"{where}: {str(exc).removeprefix('manifest: ')}") from None
        return cls(changes)


def diff(old: Mapping[str, Entry], new: Mapping[str, Entry]) -> Delta:
    """The delta that turns `old` into `new`: `old.with_changes(diff(old, new)) == new`."""
    changes: dict[str, Entry | None] = {path: None for path in old if path not in new}
    for path, entry in new.items():
        if old.get(path) != entry:
            changes[path] = entry
    return Delta(changes)


@dataclass(frozen=True)
class Patch:
    """What a client sends to move a deployment from the tree `prev_patch_hash` to `next_hash`.

    The JSON shape (docs/live-reload.md): `{"format": 1, "prev_patch_hash", "next_hash",
    "changes": {path: {"sha256", "mode"} | null}, "hot_reload": "auto" | "off"}`.
    """

    prev_patch_hash: str
    next_hash: str
    changes: Delta = field(default_factory=Delta)
    hot_reload: str = "auto"

    def __post_init__(self) -> None:
        for name in ("prev_patch_hash", "next_hash"):
            _check_hash(name, getattr(self, name))
        if not isinstance(self.changes, Delta):
            raise PatchError(f"changes: expected a Delta, got {type(self.changes).__name__}")
        if self.hot_reload not in HOT_RELOAD_CHOICES:
            raise PatchError(f"hot_reload: expected one of {', '.join(HOT_RELOAD_CHOICES)}, got {self.hot_reload!r}")

    @classmethod
    def between(cls, base: Manifest, changes: Delta, hot_reload: str = "auto") -> "Patch":
        """The patch applying `changes` to `base`, with the next hash computed here."""
        return cls(base.tree_hash(), base.with_changes(changes).tree_hash(), changes, hot_reload)

    def apply_to(self, base: Manifest) -> Manifest:
        """The receiver's side: `base` after the changes, refused unless the hashes agree."""
        if base.tree_hash() != self.prev_patch_hash:
            raise PatchError(
                f"prev_patch_hash: the patch is based on tree {self.prev_patch_hash[:12]}, "
                f"but this tree is {base.tree_hash()[:12]}"
            )
        try:
            result = base.with_changes(self.changes)
        except ManifestError as exc:
            raise PatchError(str(exc).removeprefix("manifest: ")) from None
        if result.tree_hash() != self.next_hash:
            raise PatchError(
                f"next_hash: the changes give tree {result.tree_hash()[:12]}, the patch says {self.next_hash[:12]} "
                "(the sender's tree differs from this one)"
            )
        return result

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT_VERSION,
            "prev_patch_hash": self.prev_patch_hash,
            "next_hash": self.next_hash,
            "changes": self.changes.to_dict(),
            "hot_reload": self.hot_reload,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Any) -> "Patch":
        if not isinstance(data, dict) or data.get("format") != FORMAT_VERSION:
            found = data.get("format") if isinstance(data, dict) else type(data).__name__
            raise PatchError(f"patch: expected an object with \"format\": {FORMAT_VERSION}, got {found!r}")
        known = {"format", "prev_patch_hash", "next_hash", "changes", "hot_reload"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise PatchError(f"patch: unknown keys {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        missing = sorted({"prev_patch_hash", "next_hash", "changes"} - set(data))
        if missing:
            raise PatchError(f"patch: missing {', '.join(missing)}")
        return cls(
            prev_patch_hash=data["prev_patch_hash"],
            next_hash=data["next_hash"],
            changes=Delta.from_dict(data["changes"]),
            hot_reload=data.get("hot_reload", "auto"),
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> "Patch":
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise PatchError(f"patch: not JSON ({exc})") from None
        return cls.from_dict(data)


def _check_hash(name: str, value: Any) -> None:
    if not isinstance(value, str) or len(value) != 64 or any(char not in "0123456789abcdef" for char in value):
        raise PatchError(f"{name}: expected a tree hash (64 lowercase hex digits), got {value!r}")
