"""`--help` as a user reads it: names for values, nothing Python-specific, one meaning per flag."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from truss_cli.cli.app import app

runner = CliRunner()
COMMANDS = [[], ["image"], ["init"], ["run"], ["predict"], ["image", "build-context"], ["image", "build"], ["image", "run"],
    ["remote"], ["remote", "add"], ["remote", "list"], ["remote", "use"], ["remote", "remove"],
    ["push"], ["server"], ["server", "start"], ["server", "stop"], ["server", "status"], ["server", "logs"], ["logs"],
    ["models", "list"], ["models", "show"], ["models", "describe"], ["models", "readme"], ["models", "delete"],
    ["deployments", "list"], ["deployments", "rename"], ["deployments", "deactivate"], ["deployments", "activate"],
    ["deployments", "delete"], ["deployments", "prune"], ["deployments", "promote"], ["deployments", "retry"], ["usage"],
    ["api-keys", "create"], ["api-keys", "list"], ["api-keys", "revoke"],
    ["secrets", "set"], ["secrets", "list"], ["secrets", "delete"],
    *[["environments", name] for name in ("list", "create", "show", "update", "delete")]]


def help_text(command: list[str]) -> str:
    result = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_help_shows_names_not_python_types(command: list[str]) -> None:
    text = help_text(command)
    assert not re.search(r"<(bool|int|str|path|int range|text)[^>]*>", text), text
    assert not re.search(r"Usage: .*\{", text), text


@pytest.mark.parametrize(
    ("command", "usage"),
    [
        (["init"], "[OPTIONS] DIRECTORY"),
        (["run"], "[OPTIONS] [DIRECTORY]"),
        (["image", "build-context"], "[OPTIONS] DIRECTORY OUT_DIR"),
        (["image", "run"], "[OPTIONS] [DIRECTORY]"),
    ],
)
def test_arguments_are_named_in_the_usage_line(command: list[str], usage: str) -> None:
    (line,) = [line for line in help_text(command).splitlines() if "Usage:" in line]
    assert line.strip().endswith(" ".join(command) + " " + usage), line


def option_row(text: str, flag: str) -> str:
    (row,) = [line for line in text.splitlines() if re.search(rf"(^|\s){re.escape(flag)}(\s|,|$)", line)]
    return row


def test_flags_show_no_value_and_options_name_theirs() -> None:
    text = help_text(["image", "run"])
    assert re.search(r"--detach\s+Leave the container running", option_row(text, "--detach"))
    assert re.search(r"--no-limits\s+Ignore config.yaml", option_row(text, "--no-limits"))
    assert re.search(r"--port\s+-p\s+PORT", option_row(text, "--port"))
    assert re.search(r"--output\s+-o\s+text\|json", option_row(text, "--output"))
    assert re.search(r"--help\s+Show this message", option_row(text, "--help"))


def test_d_means_data_and_only_data() -> None:
    assert re.search(r"--data\s+-d\s+JSON", option_row(help_text(["predict"]), "--data"))
    for command in COMMANDS:
        if command != ["predict"]:
            options = [line for line in help_text(command).splitlines() if re.search(r"│\s+--", line)]
            assert options and not any(re.search(r"\s-d\s", line) for line in options), command
    result = runner.invoke(app, ["image", "run", "-d"])
    assert result.exit_code == 2
    assert "No such option: -d" in result.output


def test_predict_help_explains_every_flag() -> None:
    text = help_text(["predict"])
    for flag in ("--data", "--file", "--url"):
        assert flag in text
    assert "truss run" in text


@pytest.mark.parametrize("command", [["run"], ["image", "run"]])
def test_port_zero_is_documented(command: list[str]) -> None:
    assert "0 picks a free" in help_text(command)


MANAGEMENT = [["models", name] for name in ("list", "show", "describe", "readme", "delete")] + [
    ["deployments", name] for name in ("list", "rename", "deactivate", "activate", "delete", "prune", "promote", "retry")
] + [["environments", name] for name in ("list", "create", "show", "update", "delete")] + [["usage"], ["push"]]


@pytest.mark.parametrize("command", MANAGEMENT, ids=" ".join)
def test_every_flag_and_argument_of_the_management_commands_is_explained(command: list[str]) -> None:
    import typer.main

    group = typer.main.get_command(app)
    context = group.make_context("truss", list(command) + ["--help"], resilient_parsing=True)
    found = group
    for name in command:
        found = found.get_command(context, name)  # type: ignore[attr-defined]
    unexplained = [param.name for param in found.params if not (getattr(param, "help", None) or "").strip()]
    assert unexplained == [], f"{' '.join(command)}: no help for {unexplained}"


@pytest.mark.parametrize("command", [c for c in MANAGEMENT if c[-1] in ("list", "show", "readme") or c == ["usage"]], ids=" ".join)
def test_every_list_and_show_offers_json(command: list[str]) -> None:
    assert re.search(r"--output\s+-o\s+text\|json", option_row(help_text(command), "--output"))
