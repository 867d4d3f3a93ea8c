"""Deltas and patches between two trees (truss_cli.sync.patch), and Manifest.with_changes."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from truss_cli.sync.manifest import EXECUTABLE_MODE, FILE_MODE, LINK_MODE, Entry, Manifest, ManifestError, link_entry
from truss_cli.sync.patch import Delta, Patch, PatchError, check_relative_path, diff
from truss_cli.tree import TreeHasher, list_files


def digest(text: bytes) -> str:
    return hashlib.sha256(text).hexdigest()


A, B, C = digest(b"a"), digest(b"b"), digest(b"c")


def manifest_of(root: Path) -> Manifest:
    return TreeHasher().manifest(list_files(root))


@pytest.mark.parametrize(
    "path",
    ["/etc/passwd", "../outside", "model/../../x", "a/./b", "a//b", "a/", ".", "", "a\0b", "model\\model.py", "..\\x"],
)
def test_unsafe_paths_are_refused_by_name(path: str) -> None:
    with pytest.raises(PatchError) as raised:
        check_relative_path(path)
    assert repr(path) in str(raised.value)


@pytest.mark.parametrize("path", ["model/model.py", "config.yaml", ".truss_ignore", "a/b c/ü.bin", "..hidden", "x..y"])
def test_plain_relative_paths_pass(path: str) -> None:
    assert check_relative_path(path) == path


def test_a_delta_refuses_unsafe_paths_and_non_entries() -> None:
    with pytest.raises(PatchError, match="absolute"):
        Delta({"/abs": Entry(A, FILE_MODE)})
    with pytest.raises(PatchError, match="expected an Entry or None"):
        Delta({"a": "not an entry"})  # type: ignore[dict-item]


def test_a_delta_applied_to_the_old_manifest_gives_the_new_tree(tmp_path: Path) -> None:
    root = tmp_path / "model"
    (root / "model").mkdir(parents=True)
    (root / "config.yaml").write_text("model_name: m\n")
    (root / "model" / "model.py").write_text("class Model: pass\n")
    (root / "model" / "old.py").write_text("gone soon\n")
    (root / "run.sh").write_text("#!/bin/sh\n")
    before = manifest_of(root)
    before.tree_hash()  # the cached lines are what with_changes splices

    (root / "model" / "model.py").write_text("class Model:\n    x = 1\n")
    (root / "model" / "old.py").unlink()
    (root / "data").mkdir()
    (root / "data" / "weights.bin").write_bytes(bytes(range(256)) * 10)
    os.chmod(root / "run.sh", 0o755)
    after = manifest_of(root)

    delta = diff(before, after)
    assert sorted(delta.puts()) == ["data/weights.bin", "model/model.py", "run.sh"]
    assert delta.deletes() == ["model/old.py"]
    applied = before.with_changes(delta)
    assert applied == after
    assert applied.tree_hash() == after.tree_hash() == Manifest(dict(after)).tree_hash()


def test_with_changes_matches_a_fresh_hash_for_inserts_at_both_ends_and_a_delete() -> None:
    base = Manifest({"m/a": Entry(A, FILE_MODE), "m/c": Entry(B, FILE_MODE)})
    base.tree_hash()
    changes = {"0first": Entry(C, EXECUTABLE_MODE), "zz/last": Entry(A, FILE_MODE), "m/a": None, "m/b": link_entry("../m")}
    spliced = base.with_changes(changes)
    fresh = Manifest({"0first": Entry(C, EXECUTABLE_MODE), "m/b": link_entry("../m"), "m/c": Entry(B, FILE_MODE), "zz/last": Entry(A, FILE_MODE)})
    assert spliced.tree_hash() == fresh.tree_hash()
    # The original is untouched (manifests are immutable).
    assert base.tree_hash() == Manifest({"m/a": Entry(A, FILE_MODE), "m/c": Entry(B, FILE_MODE)}).tree_hash()
    assert sorted(base) == ["m/a", "m/c"]


def test_with_changes_sorts_by_utf8_bytes_as_the_hash_definition_says() -> None:
    # "é" (U+00E9) and "\ue000" sort differently by code point and by UTF-8 bytes only when
    # surrogates are involved; a non-UTF-8 name (surrogateescape) is the case that differs.
    odd = b"\xff".decode("utf-8", "surrogateescape")
    base = Manifest({"é": Entry(A, FILE_MODE), "\ue000": Entry(B, FILE_MODE)})
    base.tree_hash()
    spliced = base.with_changes({odd: Entry(C, FILE_MODE), "a": Entry(A, FILE_MODE)})
    fresh = Manifest({"é": Entry(A, FILE_MODE), "\ue000": Entry(B, FILE_MODE), odd: Entry(C, FILE_MODE), "a": Entry(A, FILE_MODE)})
    assert spliced.tree_hash() == fresh.tree_hash()


def test_deleting_a_path_the_tree_lacks_is_an_error_naming_it() -> None:
    with pytest.raises(ManifestError, match="ghost.py: deleted, but it is not in the tree"):
        Manifest({"a": Entry(A, FILE_MODE)}).with_changes({"ghost.py": None})


def test_with_changes_checks_the_new_entries() -> None:
    with pytest.raises(ManifestError, match="mode"):
        Manifest({}).with_changes({"a": Entry(A, 0o100600)})
    with pytest.raises(ManifestError, match="relative path"):
        Manifest({}).with_changes({"../a": Entry(A, FILE_MODE)})


def test_binary_files_and_modes_round_trip_through_the_patch_json(tmp_path: Path) -> None:
    root = tmp_path / "model"
    root.mkdir()
    (root / "config.yaml").write_text("")
    before = manifest_of(root)
    (root / "blob.bin").write_bytes(bytes(range(256)))
    (root / "tool").write_text("#!/bin/sh\n")
    os.chmod(root / "tool", 0o700)
    (root / "pkg").mkdir()
    (root / "alias").symlink_to("pkg")
    (root / "pkg" / "x.py").write_text("")
    after = manifest_of(root)

    patch = Patch.between(before, diff(before, after))
    document = json.loads(patch.to_json())
    assert document["format"] == 1
    assert document["prev_patch_hash"] == before.tree_hash()
    assert document["next_hash"] == after.tree_hash()
    assert document["changes"]["blob.bin"] == {"sha256": digest(bytes(range(256))), "mode": FILE_MODE}
    assert document["changes"]["tool"]["mode"] == EXECUTABLE_MODE
    assert document["changes"]["alias"]["mode"] == LINK_MODE
    assert document["hot_reload"] == "auto"

    received = Patch.from_json(patch.to_json())
    assert received == patch
    assert received.apply_to(before) == after


def test_the_receiver_refuses_a_patch_whose_next_hash_it_cannot_reproduce() -> None:
    base = Manifest({"a": Entry(A, FILE_MODE)})
    other = Manifest({"a": Entry(B, FILE_MODE)})
    patch = Patch(base.tree_hash(), other.tree_hash(), Delta({"a": Entry(C, FILE_MODE)}))
    with pytest.raises(PatchError, match="next_hash: the changes give tree"):
        patch.apply_to(base)


def test_the_receiver_refuses_a_patch_on_another_base() -> None:
    base = Manifest({"a": Entry(A, FILE_MODE)})
    patch = Patch.between(base, Delta({"b": Entry(B, FILE_MODE)}))
    with pytest.raises(PatchError, match="prev_patch_hash: the patch is based on tree"):
        patch.apply_to(Manifest({}))


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"format": 2}, 'expected an object with "format": 1, got 2'),
        ([], "got 'list'"),
        ({"format": 1, "prev_patch_hash": A, "next_hash": B}, "missing changes"),
        ({"format": 1, "prev_patch_hash": A, "next_hash": B, "changes": {}, "ops": []}, "unknown keys ops"),
        ({"format": 1, "prev_patch_hash": "x", "next_hash": B, "changes": {}}, "prev_patch_hash: expected a tree hash"),
        ({"format": 1, "prev_patch_hash": A, "next_hash": B, "changes": {"../x": None}}, "'../x'"),
        ({"format": 1, "prev_patch_hash": A, "next_hash": B, "changes": {"x": {"sha256": A}}}, "changes.x: expected null or"),
        ({"format": 1, "prev_patch_hash": A, "next_hash": B, "changes": {"x": {"sha256": "Z", "mode": FILE_MODE}}}, "sha256"),
        ({"format": 1, "prev_patch_hash": A, "next_hash": B, "changes": {}, "hot_reload": "on"}, "hot_reload: expected one of auto, off"),
    ],
)
def test_a_malformed_patch_document_is_refused_with_the_reason(document: object, message: str) -> None:
    with pytest.raises(PatchError) as raised:
        Patch.from_json(json.dumps(document))
    assert message in str(raised.value)


def test_deltas_compose_and_undone_changes_drop_out() -> None:
    base = Manifest({"keep": Entry(A, FILE_MODE), "edit": Entry(A, FILE_MODE), "undo": Entry(A, FILE_MODE)})
    first = Delta({"edit": Entry(B, FILE_MODE), "temp": Entry(C, FILE_MODE), "undo": Entry(B, FILE_MODE)})
    second = Delta({"temp": None, "undo": Entry(A, FILE_MODE), "keep": None})
    combined = first.then(second, base)
    assert combined == Delta({"edit": Entry(B, FILE_MODE), "keep": None})
    assert base.with_changes(combined) == base.with_changes(first).with_changes(second)


@pytest.mark.parametrize("size", [0, 1, (64 << 10) - 1, 64 << 10, (64 << 10) + 1, (1 << 20) + 7, 3 << 20])
def test_file_digests_are_the_sha256_of_the_bytes_at_every_size(tmp_path: Path, size: int) -> None:
    from truss_cli.sync.manifest import sha256_file

    content = os.urandom(size)
    (tmp_path / "f").write_bytes(content)
    assert sha256_file(tmp_path / "f").hex() == digest(content)
