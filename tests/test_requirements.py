"""The model's requirements resolved once: includes inlined, local paths refused, and the
image build context receiving the resolved lines."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from truss_cli.cli.app import app
from truss_cli.config import parse_config
from truss_cli.errors import UsageError
from truss_cli.requirements import model_constraints, model_requirements, resolve_requirements

runner = CliRunner()
MODEL_PY = "class Model:\n    def predict(self, x):\n        return x\n"


def config(text: str):
    return parse_config(text).config


def write(root: Path, files: dict[str, str]) -> Path:
    for relative, content in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(content)
    return root


def test_the_config_list_is_used_as_is(tmp_path: Path) -> None:
    assert model_requirements(tmp_path, config("requirements: ['six==1.16.0', 'numpy >=1.20']\n")) == [
        "six==1.16.0",
        "numpy >=1.20",
    ]


def test_includes_are_inlined_relative_to_the_including_file(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "reqs/main.txt": "# pinned\n--extra-index-url https://example.org/simple\nsix==1.16.0  # trailing\n"
            "-r more/extra.txt\n-c ../constraints.txt\n",
            "reqs/more/extra.txt": "requests \\\n  >=2\n--requirement=deeper.txt\n",
            "reqs/more/deeper.txt": "idna\n",
            "constraints.txt": "urllib3<3\n",
        },
    )
    resolved = resolve_requirements(tmp_path, config("requirements_file: reqs/main.txt\n"))
    assert resolved.requirements == ["--extra-index-url https://example.org/simple", "six==1.16.0", "requests >=2", "idna"]
    # Constraints stay constraints: they limit versions but install nothing by themselves.
    assert resolved.constraints == ["urllib3<3"]
    assert model_constraints(tmp_path, config("requirements_file: reqs/main.txt\n")) == ["urllib3<3"]


def test_remote_includes_and_urls_are_kept_for_pip(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "r.txt": "-r https://example.org/r.txt\ngit+https://github.com/x/y.git@v1#egg=y\n"
            "torch @ https://download.pytorch.org/whl/torch.whl\nsix; python_version < '3.12'\n",
        },
    )
    assert model_requirements(tmp_path, config("requirements_file: r.txt\n")) == [
        "-r https://example.org/r.txt",
        "git+https://github.com/x/y.git@v1#egg=y",
        "torch @ https://download.pytorch.org/whl/torch.whl",
        "six; python_version < '3.12'",
    ]


@pytest.mark.parametrize(
    "line",
    ["./pkg", "-e ./pkg", "-e .", "../libs/thing", "wheels/x-1.0-py3-none-any.whl", "thing @ file:///src/thing",
     "file:./pkg", "-f ./wheels"],
)
def test_local_paths_are_refused_naming_the_file_and_line(tmp_path: Path, line: str) -> None:
    write(tmp_path, {"reqs.txt": "six\n-r inner.txt\n", "inner.txt": f"# first\n{line}\n"})
    with pytest.raises(UsageError) as raised:
        model_requirements(tmp_path, config("requirements_file: reqs.txt\n"))
    assert raised.value.exit_code == 2
    assert f"{(tmp_path / 'inner.txt').resolve()}:2:" in raised.value.message
    assert line in raised.value.message
    assert "packages/" in raised.value.hint


def test_a_local_path_in_the_config_list_names_the_entry(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as raised:
        model_requirements(tmp_path, config("requirements: [six, ./vendor/lib]\n"))
    assert "requirements[1]" in raised.value.message


def test_missing_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as raised:
        model_requirements(tmp_path, config("requirements_file: reqs.txt\n"))
    assert "requirements_file: 'reqs.txt' not found" in raised.value.message

    write(tmp_path, {"reqs.txt": "six\n-r sub/other.txt\n"})
    with pytest.raises(UsageError) as raised:
        model_requirements(tmp_path, config("requirements_file: reqs.txt\n"))
    assert f"{(tmp_path / 'reqs.txt').resolve()}:2: -r sub/other.txt: not found" in raised.value.message
    assert str((tmp_path / "sub" / "other.txt").resolve()) in raised.value.message


def test_an_include_loop_is_reported(tmp_path: Path) -> None:
    write(tmp_path, {"a.txt": "-r b.txt\n", "b.txt": "-r a.txt\n"})
    with pytest.raises(UsageError, match="loop"):
        model_requirements(tmp_path, config("requirements_file: a.txt\n"))


def test_the_build_context_gets_the_resolved_requirements(tmp_path: Path) -> None:
    model = write(
        tmp_path / "m",
        {
            "config.yaml": "requirements_file: requirements.txt\n",
            "model/model.py": MODEL_PY,
            "requirements.txt": "-r base.txt\nsix\n-c pins.txt\n",
            "base.txt": "idna\n",
            "pins.txt": "six==1.16.0\n",
        },
    )
    out = tmp_path / "ctx"
    result = runner.invoke(app, ["image", "build-context", str(model), str(out), "--base-image", "b:1"])
    assert result.exit_code == 0, result.output
    assert (out / "requirements/model.txt").read_text() == "idna\nsix\n"
    assert (out / "requirements/constraints.txt").read_text() == "six==1.16.0\n"


def test_a_local_path_requirement_stops_the_build_context(tmp_path: Path) -> None:
    model = write(
        tmp_path / "m",
        {"config.yaml": "requirements_file: requirements.txt\n", "model/model.py": MODEL_PY, "requirements.txt": "-e .\n"},
    )
    out = tmp_path / "ctx"
    result = runner.invoke(app, ["image", "build-context", str(model), str(out)])
    assert result.exit_code == 2
    output = result.stderr
    assert "requirements.txt:1: '-e .' is a local path" in output
    assert not out.exists()
