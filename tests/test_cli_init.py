"""`truss init` through Typer's CliRunner; the directory it writes runs with `truss run`."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from run_helpers import TrussRun, shared_cache
from truss_cli.cli.app import app
from truss_cli.config import load_config
from truss_cli.server.protocol import PREDICT_PATH

runner = CliRunner()
INIT_FILES = ["config.yaml", "model/__init__.py", "model/model.py"]


def files_under(root: Path) -> list[str]:
    return sorted(path.relative_to(root).as_posix() for path in root.rglob("*") if path.is_file())


def test_writes_a_valid_model_directory_named_after_the_directory(tmp_path: Path) -> None:
    target = tmp_path / "sentiment-v2"
    result = runner.invoke(app, ["init", str(target)])
    assert result.exit_code == 0, result.output
    assert files_under(target) == INIT_FILES
    loaded = load_config(target)
    assert loaded.warnings == []
    assert loaded.config.model_name == "sentiment-v2"
    assert loaded.config.python_version == f"py3{sys.version_info[1]}"
    assert "truss run" in result.stdout


def test_name_option_is_written_safely(tmp_path: Path) -> None:
    name = 'Sentiment: "v2" – ünïcode'
    result = runner.invoke(app, ["init", str(tmp_path / "m"), "--name", name])
    assert result.exit_code == 0, result.output
    assert load_config(tmp_path / "m").config.model_name == name


def test_an_existing_empty_directory_is_fine(tmp_path: Path) -> None:
    result = runner.invoke(app, ["init", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert files_under(tmp_path) == INIT_FILES


@pytest.mark.parametrize("existing", ["notes.txt", "model/model.py", ".hidden"])
def test_refuses_a_non_empty_directory_and_writes_nothing(tmp_path: Path, existing: str) -> None:
    target = tmp_path / "taken"
    (target / existing).parent.mkdir(parents=True, exist_ok=True)
    (target / existing).write_text("mine")
    result = runner.invoke(app, ["init", str(target)])
    assert result.exit_code == 2
    assert f"{target}: directory is not empty" in result.stderr
    assert files_under(target) == [existing]
    assert (target / existing).read_text() == "mine"


def test_refuses_a_path_that_is_a_file(tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_text("x")
    result = runner.invoke(app, ["init", str(target)])
    assert result.exit_code == 2
    assert "exists and is not a directory" in result.stderr
    assert target.read_text() == "x"


def test_the_new_directory_runs_with_truss_run(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    target = tmp_path / "fresh"
    assert runner.invoke(app, ["init", str(target)]).exit_code == 0
    run = TrussRun(target, shared_cache(tmp_path_factory), tmp_path / "logs")
    try:
        url = run.wait_for_url()
        answer = httpx.post(url + PREDICT_PATH, json={"text": "hi"}, timeout=30)
    finally:
        code = run.stop(signal.SIGINT)
    assert answer.status_code == 200
    assert answer.json() == {"echo": {"text": "hi"}}
    assert code == 130  # stopped with Ctrl-C
    assert "Warning" not in run.stderr  # nothing unknown in the generated config.yaml
