"""The shared confirmation: asks on a terminal (a real pty here), `--yes` skips, no terminal refuses."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
import textwrap

from tests.conftest import REPO_ROOT

# A command that confirms, then says it went ahead: what `truss deployments delete` does.
_PROGRAM = textwrap.dedent(
    """
    import sys
    from truss_cli.cli import console
    from truss_cli.cli.confirm import confirm
    from truss_cli.errors import TrussError
    try:
        confirm("Delete deployment d1 of model m?", yes=sys.argv[1] == "yes", action="delete deployment d1",
                warning="its URLs will answer 404")
    except TrussError as exc:
        console.error(exc.message, exc.hint)
        sys.exit(exc.exit_code)
    print("went ahead")
    """
)


def run(yes: bool, stdin: int | None = subprocess.DEVNULL) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run(
        [sys.executable, "-c", _PROGRAM, "yes" if yes else "ask"], stdin=stdin, capture_output=True, text=True, env=env, timeout=60
    )


def on_terminal(answer: str) -> subprocess.CompletedProcess[str]:
    """Run with a pseudo-terminal as standard input, the answer already typed into it."""
    leader, follower = pty.openpty()
    try:
        os.write(leader, answer.encode() + b"\n")
        return run(yes=False, stdin=follower)
    finally:
        os.close(follower)
        os.close(leader)


def test_without_a_terminal_and_without_yes_it_refuses_and_says_to_pass_yes() -> None:
    done = run(yes=False)
    assert done.returncode == 1
    assert "went ahead" not in done.stdout
    assert "refusing to delete deployment d1 without a confirmation: there is no terminal to ask on" in done.stderr
    assert "pass --yes" in done.stderr


def test_yes_goes_ahead_without_asking_but_still_warns() -> None:
    done = run(yes=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "went ahead"
    assert "its URLs will answer 404" in done.stderr
    assert "[y/N]" not in done.stderr


def test_on_a_terminal_it_asks_and_a_yes_goes_ahead() -> None:
    done = on_terminal("y")
    assert done.returncode == 0, done.stderr
    assert "Delete deployment d1 of model m? [y/N]" in done.stderr
    assert done.stdout.strip() == "went ahead"


def test_on_a_terminal_anything_but_yes_changes_nothing() -> None:
    for answer in ("n", ""):
        done = on_terminal(answer)
        assert done.returncode == 1
        assert "went ahead" not in done.stdout
        assert "not confirmed: did not delete deployment d1" in done.stderr
