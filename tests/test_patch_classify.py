"""Which changes between two trees a development replica can take in place, and which need
a rebuild (controlplane/patch_classify.py): decided from the trees' files and config.yaml."""

from __future__ import annotations

from pathlib import Path

from conftest import write_model_dir
from truss_cli.config import load_config
from truss_cli.controlplane.patch_classify import Change, classify, requirements_delta
from truss_cli.incremental_tree import IncrementalTree

BASE = "model_name: m\npython_version: py311\nrequirements_file: requirements.txt\n"


def change(tmp_path: Path, files: dict[str, str]) -> Change:
    """classify from a base model directory to the same with `files` written."""
    old = write_model_dir(tmp_path / "old", "class Model:\n    pass\n", BASE, {"requirements.txt": "six\n"})
    new = write_model_dir(tmp_path / "new", "class Model:\n    pass\n", BASE, {"requirements.txt": "six\n"})
    for relative, text in files.items():
        (new / relative).write_text(text)
    before, after = IncrementalTree(old).manifest, IncrementalTree(new).manifest
    trees = {before.tree_hash(): old, after.tree_hash(): new}
    return classify(before, after, lambda manifest: load_config(trees[manifest.tree_hash()]).config)


def reason(tmp_path: Path, files: dict[str, str], environments: bool = False) -> str | None:
    """Why a rebuild, on a runtime that can (`environments`) or cannot build environments."""
    return change(tmp_path, files).rebuild_reason(environments)


def test_model_code_and_data_are_patched(tmp_path: Path) -> None:
    assert reason(tmp_path, {"model/model.py": "class Model:\n    x = 1\n", "data.txt": "x"}) is None


def test_a_config_change_the_replica_can_take_is_patched(tmp_path: Path) -> None:
    assert reason(tmp_path, {"config.yaml": BASE + "environment_variables:\n  A: b\n"}) is None


def test_resources_and_python_need_a_rebuild_on_every_runtime(tmp_path: Path) -> None:
    assert "resources" in reason(tmp_path / "2", {"config.yaml": BASE + "resources:\n  cpu: 500m\n"}, True)
    assert "python_version" in reason(tmp_path / "3", {"config.yaml": BASE.replace("py311", "py312")}, True)


def test_requirements_are_patched_where_environments_can_be_built_and_rebuilt_elsewhere(tmp_path: Path) -> None:
    in_file = change(tmp_path / "1", {"requirements.txt": "six\nidna\n"})
    assert in_file.rebuild is None and in_file.requirements == "requirements.txt changed"
    assert in_file.rebuild_reason(environments=True) is None
    assert "requirements.txt changed" in in_file.rebuild_reason(environments=False)
    in_config = change(tmp_path / "2", {"config.yaml": "model_name: m\npython_version: py311\nrequirements: [six]\n"})
    assert in_config.rebuild is None and "requirements" in in_config.requirements
    # A rebuild key changed with them: a rebuild, whatever the runtime.
    both = change(tmp_path / "3", {"requirements.txt": "idna\n", "config.yaml": BASE + "system_packages: [curl]\n"})
    assert "system_packages" in both.rebuild_reason(environments=True)


def test_a_requirements_delta_matches_projects_by_name() -> None:
    delta = requirements_delta(["six==1.16.0", "idna", "Foo_Bar>=1"], ["six==1.17.0", "foo-bar>=1", "httpx"])
    assert delta.to_dict() == {"added": ["httpx"], "removed": ["idna"],
                               "changed": ["six==1.16.0 -> six==1.17.0", "Foo_Bar>=1 -> foo-bar>=1"]}
    assert delta.reason() == "requirements changed: +httpx, -idna, six==1.16.0 -> six==1.17.0, Foo_Bar>=1 -> foo-bar>=1"
