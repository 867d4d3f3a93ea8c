"""How the CLI reports errors: one plain message, the right exit code, no traceback."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from truss_cli.cli.app import app

runner = CliRunner()


def test_user_text_that_looks_like_markup_is_printed_as_typed(tmp_path: Path) -> None:
    model_dir = tmp_path / "m"
    assert runner.invoke(app, ["init", str(model_dir)]).exit_code == 0
    config = model_dir / "config.yaml"
    config.write_text(config.read_text() + 'model_module_dir: "../[bold]src"\n')
    result = runner.invoke(app, ["run", str(model_dir)])
    assert result.exit_code == 2, result.output
    assert 'model_module_dir: expected a path inside the model directory (relative, without ".."), got "../[bold]src"' in result.stderr


def test_a_closing_tag_in_a_config_value_is_a_config_error_not_a_crash(tmp_path: Path) -> None:
    model_dir = tmp_path / "m"
    assert runner.invoke(app, ["init", str(model_dir)]).exit_code == 0
    config = model_dir / "config.yaml"
    config.write_text(config.read_text().replace("python_version:", 'python_version: "[/]"\n_old_python_version:'))
    result = runner.invoke(app, ["run", str(model_dir)])
    assert result.exit_code == 2, result.output
    (line,) = [line for line in result.stderr.splitlines() if "python_version: expected one of" in line]
    assert line.endswith('got "[/]"')


def test_init_into_a_name_with_brackets(tmp_path: Path) -> None:
    target = tmp_path / "model[/]x"
    result = runner.invoke(app, ["init", str(target)])
    assert result.exit_code == 0, result.output
    assert str(target) in result.stdout
    assert (target / "model" / "model.py").is_file()


def test_a_long_error_is_one_line_off_a_terminal(tmp_path: Path) -> None:
    # Deep enough that an 80-column wrap would break the path (it did, in a long temp dir).
    model_dir = tmp_path.joinpath(*["a-directory-with-a-long-name"] * 6, "model")
    assert runner.invoke(app, ["init", str(model_dir)]).exit_code == 0
    (model_dir / "config.yaml").write_text("runtime:\n  predict_concurrency: two\n")
    result = runner.invoke(app, ["run", str(model_dir)])
    assert result.exit_code == 2, result.output
    assert result.stderr == (
        f'Error: {model_dir / "config.yaml"}: runtime.predict_concurrency: expected an integer >= 1, got "two"\n'
    )


def test_bad_usage_is_plain_lines_not_a_wrapped_box() -> None:
    result = runner.invoke(app, ["run", "--port", "not-a-number"], prog_name="truss")
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        "Usage: truss run [OPTIONS] [DIRECTORY]",
        "Try 'truss run --help' for help.",
        "Error: Invalid value for '--port' / '-p': Input should be a valid integer, unable to parse string as an integer",
    ]
