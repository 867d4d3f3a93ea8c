"""The replica's patch plan (`server/control/apply.plan`): the tree after the patch, hashed
from the running tree's hash lines, and the refusals that keep it a tree."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from truss_cli.server.control.apply import PatchRefused, plan
from truss_cli.sync.manifest import FILE_MODE, Entry, Manifest


def _entry(data: bytes) -> Entry:
    return Entry(hashlib.sha256(data).hexdigest(), FILE_MODE)


def _tree(tmp_path: Path) -> tuple[Manifest, Path, Path]:
    root, blobs = tmp_path / "tree", tmp_path / "blobs"
    files = {"config.yaml": b"model_name: x\n", "model/model.py": b"class Model: ...\n", "data/a/b.txt": b"b\n"}
    for path, data in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(data)
    blobs.mkdir()
    return Manifest({path: _entry(data) for path, data in files.items()}), root, blobs


def _put(blobs: Path, path: str, data: bytes) -> dict:
    (blobs / _entry(data).sha256).write_bytes(data)
    return {"path": path, "sha256": _entry(data).sha256, "mode": FILE_MODE}


def test_the_planned_tree_is_the_running_tree_with_the_changes(tmp_path: Path) -> None:
    current, root, blobs = _tree(tmp_path)
    document = {"puts": [_put(blobs, "model/model.py", b"class Model: pass\n"), _put(blobs, "model/new.py", b"x = 1\n")],
                "deletes": ["data/a/b.txt"]}
    planned = plan(current, document, blobs, root)
    expected = {**dict(current.items()), "model/model.py": _entry(b"class Model: pass\n"), "model/new.py": _entry(b"x = 1\n")}
    del expected["data/a/b.txt"]
    assert planned.manifest.tree_hash() == Manifest(expected).tree_hash()
    assert dict(planned.manifest.items()) == expected
    assert planned.deletes == ["data/a/b.txt"]


@pytest.mark.parametrize("path, refused", [
    ("model/model.py/inner.py", "its parent model/model.py is a file of the tree"),  # under a file
    ("data/a", "data/a/b.txt: its parent data/a is a file of the tree"),  # a file where a directory is
])
def test_a_new_file_where_the_tree_has_a_file_or_a_directory_is_refused(tmp_path: Path, path: str, refused: str) -> None:
    current, root, blobs = _tree(tmp_path)
    with pytest.raises(PatchRefused, match=refused):
        plan(current, {"puts": [_put(blobs, path, b"new\n")], "deletes": []}, blobs, root)


def test_a_file_may_replace_a_directory_whose_files_the_same_patch_deletes(tmp_path: Path) -> None:
    current, root, blobs = _tree(tmp_path)
    planned = plan(current, {"puts": [_put(blobs, "data/a", b"now a file\n")], "deletes": ["data/a/b.txt"]}, blobs, root)
    assert "data/a" in planned.manifest and "data/a/b.txt" not in planned.manifest


def test_a_put_without_a_blob_takes_a_file_of_the_tree_with_that_content_or_is_refused(tmp_path: Path) -> None:
    current, root, blobs = _tree(tmp_path)
    renamed = {"path": "model/copy.py", "sha256": _entry(b"class Model: ...\n").sha256, "mode": FILE_MODE}
    planned = plan(current, {"puts": [renamed], "deletes": []}, blobs, root)
    assert planned.sources[renamed["sha256"]] == root / "model" / "model.py"
    unknown = {"path": "model/other.py", "sha256": "0" * 64, "mode": FILE_MODE}
    with pytest.raises(PatchRefused, match="no blob 0{64} in the envelope"):
        plan(current, {"puts": [unknown], "deletes": []}, blobs, root)
