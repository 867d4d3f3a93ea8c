"""`truss image build-context | build | run`: a model directory as a Docker image."""

from __future__ import annotations

import re
import signal
import sys
from collections import deque
from pathlib import Path
from typing import Optional

import typer
from rich.console import Group
from rich.live import Live
from rich.spinner import Spinner
from rich.text import Text

from truss_cli.cli import console
from truss_cli.image.build import BuildFailed, BuildListener, BuildResult, BuildStep, build_image
from truss_cli.image.container import (
    RunningContainer,
    ensure_port_free,
    runtime_environment,
    start_container,
    wait_until_ready,
)
from truss_cli.image.context import BASE_IMAGE_ENV, ImagePlan, plan_image, write_build_context
from truss_cli.image.engine import connect

app = typer.Typer(help="Build and run Docker images of a model directory.", no_args_is_help=True)

_TAIL_LINES = 6
_BOOKKEEPING = re.compile(r"^\s*(---> |Removing intermediate container )")

ModelDir = typer.Argument(Path("."), help="The model directory (holding config.yaml).", show_default=True)
BaseImageOption = typer.Option(
    None,
    "--base-image",
    help=f"Build FROM this image instead of config.yaml's base_image or python:<version>-slim "
    f"(also settable with {BASE_IMAGE_ENV}; for machines without Docker Hub).",
    show_default=False,
)
TagOption = typer.Option(
    None, "--tag", "-t", help="Name the image TAG (default: truss-<model name>:<content hash>).", show_default=False
)


@app.command("build-context")
def build_context(
    model_dir: Path = typer.Argument(..., help="The model directory (holding config.yaml)."),
    out_dir: Path = typer.Argument(..., help="Where to write the context; must not exist or be empty."),
    base_image: Optional[str] = BaseImageOption,
) -> None:
    """Write the Docker build context (Dockerfile and files) without building it."""
    plan = _plan(model_dir, base_image)
    written = write_build_context(plan, out_dir)
    console.err.print(f"Build context for [bold]{plan.model_name}[/] written to {written}")
    console.out.print(f"docker build {written}")


@app.command("build")
def build(
    model_dir: Path = ModelDir,
    tag: Optional[str] = TagOption,
    no_cache: bool = typer.Option(False, "--no-cache", help="Rebuild every layer, ignoring Docker's cache."),
    base_image: Optional[str] = BaseImageOption,
) -> None:
    """Build the model's image. An unchanged directory reuses the image built before."""
    plan = _plan(model_dir, base_image)
    result = _build(plan, tag, no_cache)
    console.out.print(result.tag)


@app.command("run")
def run(
    model_dir: Path = ModelDir,
    tag: Optional[str] = TagOption,
    port: int = typer.Option(8080, "--port", "-p", help="Serve on 127.0.0.1:PORT."),
    detach: bool = typer.Option(False, "--detach", "-d", help="Leave the container running in the background."),
    base_image: Optional[str] = BaseImageOption,
    secrets_dir: Optional[Path] = typer.Option(
        None,
        "--secrets-dir",
        help="Mount this directory (one file per secret) read-only; declared secrets are also taken from "
        "TRUSS_SECRET_<name> environment variables.",
        show_default=False,
    ),
) -> None:
    """Build the image if needed, start it, wait until the model is ready, and stream its logs."""
    plan = _plan(model_dir, base_image)
    ensure_port_free(port)  # before a build that may take minutes
    result = _build(plan, tag, no_cache=False)
    client = connect()
    container = start_container(
        client,
        result.tag,
        plan.model_name,
        port,
        environment=runtime_environment(plan.config),
        secrets_dir=secrets_dir,
    )
    try:
        with console.err.status(f"Starting {container.name} (waiting for load() to finish)..."):
            wait_until_ready(container)
    except BaseException:
        container.remove()
        raise
    console.err.print(f"[green]Ready[/] {plan.model_name} in container {container.name}")
    console.out.print(container.url)
    if detach:
        console.err.print(f"Stop it with: docker rm -f {container.name}")
        return
    _stream_logs_until_interrupted(container)


def _plan(model_dir: Path, base_image: Optional[str]) -> ImagePlan:
    plan = plan_image(model_dir, base_image)
    for note in plan.notes:
        console.warning(note)
    return plan


def _build(plan: ImagePlan, tag: Optional[str], no_cache: bool) -> BuildResult:
    client = connect()
    progress = _BuildProgress(plan)
    try:
        with progress:
            result = build_image(client, plan, tag=tag, no_cache=no_cache, listener=progress)
    except BuildFailed as failure:
        console.err.rule("build log")
        for line in failure.log:
            console.err.print(line, markup=False, highlight=False)
        console.err.rule()
        raise
    for warning in progress.warnings:
        console.warning(warning)
    if result.reused:
        console.err.print(
            f"[green]Unchanged[/]: reusing image {result.tag} ({result.image_id[7:19]})", soft_wrap=True
        )
    else:
        cached = sum(1 for step in result.steps if step.cached)
        console.err.print(
            f"[green]Built[/] {result.tag} ({result.image_id.split(':')[-1][:12]}; "
            f"{cached}/{len(result.steps)} steps from cache)",
            soft_wrap=True,
        )
    return result


class _BuildProgress(BuildListener):
    """The current step and the last few log lines, redrawn in place (plain steps off a terminal)."""

    def __init__(self, plan: ImagePlan):
        self._plan = plan
        self._step: BuildStep | None = None
        self._tail: deque[str] = deque(maxlen=_TAIL_LINES)
        self.warnings: list[str] = []  # from the build itself, e.g. a Python version mismatch
        self._interactive = console.err.is_terminal
        self._live = Live(self._render(), console=console.err, transient=True, refresh_per_second=8)

    def __enter__(self) -> "_BuildProgress":
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
                console.err.print(f"Building {self._plan.model_name} FROM {self._plan.base_image}")
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
        if text.startswith("truss: warning: "):
            self.warnings.append(text[len("truss: warning: ") :])
        # The engine's bookkeeping lines stay in the full log but would crowd out the step's output.
        if not text.strip() or _BOOKKEEPING.match(text):
            return
        self._tail.append(text)
        if self._interactive:
            self._live.update(self._render())

    def _render(self) -> Group:
        step = self._step
        title = (
            f"Building {self._plan.model_name}: step {step.number}/{step.total}  {_one_line(step.instruction)}"
            if step
            else f"Building {self._plan.model_name} FROM {self._plan.base_image}"
        )
        width = max(20, console.err.width - 4)
        tail = [Text("  " + line[:width], style="dim", no_wrap=True) for line in self._tail]
        return Group(Spinner("dots", text=Text(title[: width + 2], no_wrap=True)), *tail)


def _one_line(instruction: str) -> str:
    return " ".join(instruction.split())


def _interrupt_on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _stream_logs_until_interrupted(container: RunningContainer) -> None:
    console.err.print("[dim]Streaming logs; press Ctrl-C to stop and remove the container.[/]")
    # A supervisor's SIGTERM must clean up like Ctrl-C does, not leave the container behind.
    signal.signal(signal.SIGTERM, _interrupt_on_sigterm)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    output = sys.stderr.buffer if hasattr(sys.stderr, "buffer") else None
    try:
        for chunk in container.logs(follow=True):
            if output is not None:
                output.write(chunk)
                output.flush()
            else:
                sys.stderr.write(chunk.decode("utf-8", "replace"))
    except KeyboardInterrupt:
        console.err.print("\nStopping...")
        container.remove()
        console.err.print(f"Removed {container.name}")
        return
    exit_code = container.client.inspect_container(container.id)["State"]["ExitCode"]
    container.remove()
    console.err.print(f"[red]The model server exited with code {exit_code}[/]")
    raise typer.Exit(1)
