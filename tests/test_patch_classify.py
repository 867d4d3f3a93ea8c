"""Which changes between two trees a development replica can take in place, and which need
a rebuild (controlplane/patch_classify.py): decided from the trees' files and config.yaml."""

from __future__ import annotations

from pathlib import Path

from conftest import write_model_dir
from truss_cli.config import load_config
from truss_cli.controlplane.patch_classify import rebuild_reason
from truss_cli.incremental_tree import IncrementalTree

BASE = "model_name: m\npython_version: py311\nrequirements_file: requirements.txt\n"


def reason(tmp_path: Path, files: dict[str, str]) -> str | None:
    """rebuild_reason from a base model directory to the same with `files` written."""
    old = write_model_dir(tmp_path / "old", "class Model:\n    pass\n", BASE, {"requirements.txt": "six\n"})
    new = write_model_dir(tmp_path / "new", "class Model:\n    pass\n", BASE, {"requirements.txt": "six\n"})
    for relative, text in files.items():
        (new / relative).write_text(text)
    before, after = IncrementalTree(old).manifest, IncrementalTree(new).manifest
    trees = {before.tree_hash(): old, after.tree_hash(): new}
    return rebuild_reason(before, after, lambda manifest: load_config(trees[manifest.tree_hash()]).config)


def test_model_code_and_data_are_patched(tmp_path: Path) -> None:
    assert reason(tmp_path, {"model/model.py": "class Model:\n    x = 1\n", "data.txt": "x"}) is None


def test_a_config_change_the_replica_can_take_is_patched(tmp_path: Path) -> None:
    assert reason(tmp_path, {"config.yaml": BASE + "environment_variables:\n  A: b\n"}) is None


def test_requirements_resources_and_python_need_a_rebuild(tmp_path: Path) -> None:
    assert "requirements.txt" in reason(tmp_path / "1", {"requirements.txt": "six\nidna\n"})
    assert "resources" in reason(tmp_path / "2", {"config.yaml": BASE + "resources:\n  cpu: 500m\n"})
    assert "python_version" in reason(tmp_path / "3", {"config.yaml": BASE.replace("py311", "py312")})
