"""Nested `.truss_ignore` files: rules below their own directory, as `.gitignore` files are,
honoured alike by the listing, `truss push`'s archive and an image's build context."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from truss_cli.archive.pack import plan_pack
from truss_cli.cli.app import app
from truss_cli.ignore import IgnoreTree
from truss_cli.tree import list_files

runner = CliRunner()


def write(root: Path, files: dict[str, str]) -> Path:
    for relative, content in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(content)
    return root


def names(root: Path) -> list[str]:
    return [item.relative_path for item in list_files(root)]


NESTED = {
    "config.yaml": "model_name: nested\npython_version: py311\n",
    ".truss_ignore": "*.log\n",
    "model/__init__.py": "",
    "model/model.py": "class Model:\n    def predict(self, x):\n        return x\n",
    # Anchored: only model/scratch, not data/scratch; `!keep.log` overrides the root's *.log.
    "model/.truss_ignore": "/scratch/\n*.tmp\n!keep.log\n",
    "model/scratch/notes.py": "",
    "model/sub/scratch/kept.py": "",
    "model/sub/cache.tmp": "",
    "model/keep.log": "",
    "model/drop.log.bak": "",
    "data/scratch/kept.bin": "",
    "data/run.tmp": "",
    "data/run.log": "",
}


def test_a_nested_truss_ignore_applies_below_its_directory_relative_to_it(tmp_path: Path) -> None:
    root = write(tmp_path / "m", NESTED)
    assert names(root) == [
        ".truss_ignore",
        "config.yaml",
        "data/run.tmp",  # *.tmp is model/'s rule only
        "data/scratch/kept.bin",  # /scratch/ is anchored at model/
        "model/.truss_ignore",
        "model/__init__.py",
        "model/drop.log.bak",
        "model/keep.log",  # the deeper file re-includes what the root file ignores
        "model/model.py",
        "model/sub/scratch/kept.py",
    ]


def test_a_deeper_file_wins_and_an_ignored_directory_cannot_be_reopened(tmp_path: Path) -> None:
    root = write(
        tmp_path / "m",
        {
            ".truss_ignore": "build/\n!*.keep\n",
            "a/.truss_ignore": "*.keep\n",
            "a/x.keep": "",
            "b/x.keep": "",
            "build/.truss_ignore": "!inner.py\n",
            "build/inner.py": "",
        },
    )
    assert names(root) == [".truss_ignore", "a/.truss_ignore", "b/x.keep"]


def test_excluded_checks_every_ancestor_for_a_single_path(tmp_path: Path) -> None:
    root = write(tmp_path / "m", NESTED)
    rules = IgnoreTree(root)
    assert rules.excluded("model/scratch/notes.py", False)
    assert rules.excluded("model/__pycache__/model.cpython-311.pyc", False)
    assert not rules.excluded("model/sub/scratch/kept.py", False)
    assert rules.excluded("data/run.log", False)


def test_reload_rereads_a_changed_truss_ignore(tmp_path: Path) -> None:
    root = write(tmp_path / "m", {"model/.truss_ignore": "*.tmp\n", "model/a.tmp": ""})
    rules = IgnoreTree(root)
    assert rules.excluded("model/a.tmp", False)
    (root / "model" / ".truss_ignore").write_text("")
    assert rules.excluded("model/a.tmp", False)  # remembered until told
    rules.reload("model")
    assert not rules.excluded("model/a.tmp", False)


def test_push_archives_honour_nested_truss_ignore_files(tmp_path: Path) -> None:
    root = write(tmp_path / "m", NESTED)
    plan = plan_pack(root)
    paths = [item.path for item in plan.files]
    assert "model/scratch/notes.py" not in paths and "model/sub/cache.tmp" not in paths
    assert "model/keep.log" in paths and "data/scratch/kept.bin" in paths
    assert sorted(plan.manifest) == names(root)


def test_image_build_contexts_honour_nested_truss_ignore_files(tmp_path: Path) -> None:
    root = write(tmp_path / "m", NESTED)
    out = tmp_path / "ctx"
    result = runner.invoke(app, ["image", "build-context", str(root), str(out), "--base-image", "base:1"])
    assert result.exit_code == 0, result.output
    files = {path.relative_to(out).as_posix() for path in out.rglob("*") if path.is_file()}
    assert {"code/model/model.py", "code/model/keep.log", "code/model/sub/scratch/kept.py", "data/scratch/kept.bin"} <= files
    assert not [name for name in files if "scratch/notes.py" in name or name.endswith(".tmp") and "model" in name]
    assert "data/run.log" not in files
