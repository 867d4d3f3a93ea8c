"""Image build progress on the terminal: the current step and the last few log lines,
redrawn in place; plain step lines when stderr is not a terminal (CI logs)."""

from __future__ import annotations

import re
from collections import deque
from typing import Iterable

from rich.console import Group
from rich.live import Live
from rich.spinner import Spinner
from rich.text import Text

from truss_cli.cli import console
from truss_cli.image.build import BuildListener, BuildStep

_TAIL_LINES = 6
# The engine's bookkeeping lines stay in the full log but would crowd out the step's output.
_BOOKKEEPING = re.compile(r"^\s*(---> |Removing intermediate container )")
_WARNING_PREFIX = "truss: warning: "  # printed by templates/image/install_python.sh


class BuildProgress(BuildListener):
    def __init__(self, name: str, base_image: str):
        """`name`: what is built (a model's name, "the control plane")."""
        self._name = name
        self._base_image = base_image
        self._step: BuildStep | None = None
        self._tail: deque[str] = deque(maxlen=_TAIL_LINES)
        self.warnings: list[str] = []  # from the build itself, e.g. a Python version mismatch
        self._interactive = console.err.is_terminal
        self._live = Live(self._render(), console=console.err, transient=True, refresh_per_second=8)

    def __enter__(self) -> "BuildProgress":
        # Started at the first step: a reused image needs no progress at all.
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._live.is_started:
            self._live.stop()

    def on_note(self, text: str) -> None:
        console.err.print(text)

    def on_step(self, step: BuildStep) -> None:
        if self._step is None:
            if self._interactive:
                self._live.start()
            else:
                console.err.print(f"Building {self._name} FROM {self._base_image}", markup=False)
        self._step = step
        self._tail.clear()
        if self._interactive:
            self._live.update(self._render())
        else:
            console.err.print(
                f"Step {step.number}/{step.total}: {_one_line(step.instruction)}",
                markup=False,
                highlight=False,
                overflow="ellipsis",
                no_wrap=True,
            )

    def on_line(self, text: str) -> None:
        if text.startswith(_WARNING_PREFIX):
            self.warnings.append(text[len(_WARNING_PREFIX) :])
        if not text.strip() or _BOOKKEEPING.match(text):
            return
        self._tail.append(text)
        if self._interactive:
            self._live.update(self._render())

    def _render(self) -> Group:
        step = self._step
        title = (
            f"Building {self._name}: step {step.number}/{step.total}  {_one_line(step.instruction)}"
            if step
            else f"Building {self._name} FROM {self._base_image}"
        )
        width = max(20, console.err.width - 4)
        tail = [Text("  " + line[:width], style="dim", no_wrap=True) for line in self._tail]
        return Group(Spinner("dots", text=Text(title[: width + 2], no_wrap=True)), *tail)


def print_build_log(lines: Iterable[str]) -> None:
    """A failed build's whole log on stderr, between rules, verbatim (no markup read in it)."""
    console.err.rule("build log")
    for line in lines:
        console.err.print(line, markup=False, highlight=False)
    console.err.rule()


def _one_line(instruction: str) -> str:
    return " ".join(instruction.split())
