"""`truss run`: serve a model directory as a local process in its own cached environment."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from types import FrameType
from typing import Optional

import typer
from rich.markup import escape

from truss_cli.cli import console
from truss_cli.cli.predict_cmd import DEFAULT_URL
from truss_cli.config import TrussConfig, load_config
from truss_cli.errors import TrussError
from truss_cli.local.environments import Environment, ensure_environment, spec_for_model
from truss_cli.local.interpreters import NoInterpreterError, select_interpreter
from truss_cli.local.replica import Replica, ReplicaExited, check_port_free, local_url, replica_environment
from truss_cli.paths import cache_dir
from truss_cli.server_bundle import cached_server_bundle

DEFAULT_PORT = 8080
_INTERRUPTED = 130


class _StopRequested(Exception):
    """SIGTERM, treated like Ctrl-C."""


def run(
    model_dir: Path = typer.Argument(Path("."), help="The model directory (with config.yaml). Default: the current directory."),
    port: int = typer.Option(DEFAULT_PORT, "--port", "-p", min=1, max=65535, help="Port the model server listens on."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on; 0.0.0.0 makes it reachable from other machines."),
) -> None:
    """Serve a model locally in an isolated, cached Python environment.

    Validates config.yaml, creates (or reuses) a virtual environment with the model's requirements, starts the model server, streams its logs and prints the URL once the model is loaded. Ctrl-C stops it.
    """
    model_dir = model_dir.resolve()
    loaded = load_config(model_dir)
    for message in loaded.warnings:
        console.warning(message)
    config = loaded.config
    check_port_free(host, port)

    previous_handlers = signal.signal(signal.SIGTERM, _raise_stop), signal.getsignal(signal.SIGINT)
    try:
        try:
            environment = _prepare_environment(model_dir, config)
            bundle = cached_server_bundle(cache_dir())
        except (KeyboardInterrupt, _StopRequested):
            console.err.print("Interrupted; nothing was left half-built.")
            raise typer.Exit(_INTERRUPTED) from None
        replica = Replica(
            [str(environment.python), "-m", "truss_cli.server", str(model_dir), "--host", host, "--port", str(port)],
            env=replica_environment(bundle, config.environment_variables),
            url=local_url(host, port),
            cwd=model_dir,  # as in the image, where the model directory is the working directory
        )
        raise typer.Exit(_serve(replica))
    finally:
        signal.signal(signal.SIGTERM, previous_handlers[0])
        signal.signal(signal.SIGINT, previous_handlers[1])


def _prepare_environment(model_dir: Path, config: TrussConfig) -> Environment:
    try:
        selection = select_interpreter(config.python_minor)
    except NoInterpreterError as exc:
        raise TrussError(str(exc), hint="install one (e.g. with pyenv), or use Docker: truss image run") from None
    warning = selection.warning()
    if warning:
        console.warning(warning)
    spec = spec_for_model(model_dir, config, selection.interpreter)
    started = time.monotonic()
    with console.err.status("Preparing the environment", spinner="dots") as status:
        environment = ensure_environment(spec, cache_dir(), on_progress=lambda step: status.update(_fit_one_line(step)))
    if environment.created:
        console.err.print(f"Created environment {environment.path} in {time.monotonic() - started:.1f}s", soft_wrap=True)
    else:
        console.err.print(f"[dim]Using cached environment {environment.path}[/]", soft_wrap=True)
    return environment


def _serve(replica: Replica) -> int:
    """Start the replica and supervise it; the returned value is the exit code of `truss run`."""
    console.err.print(f"Starting the model server on {replica.url}; waiting for load()...", soft_wrap=True)
    replica.start()
    try:
        try:
            replica.wait_until_ready()
        except ReplicaExited as exc:
            console.error(
                f"the model server exited with code {exc.exit_code} before it was ready",
                hint="see the log above (load() or the model's import failed)",
            )
            return _as_exit_code(exc.exit_code) or 1
        console.out.print(f"Model server ready at [bold]{replica.url}[/] (Ctrl-C to stop)", soft_wrap=True)
        url_flag = "" if replica.url == DEFAULT_URL else f" --url {replica.url}"
        console.out.print(f"[dim]Call it with: truss predict{url_flag} -d '<json>'[/]", soft_wrap=True)
        code = replica.wait()
        console.error(f"the model server exited with code {code}")
        return _as_exit_code(code) or 1
    except (KeyboardInterrupt, _StopRequested):
        console.err.print("Stopping the model server...")
        # A second Ctrl-C while stopping should not leave the child behind.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        replica.stop()
        console.err.print("Stopped.")
        return 0


def _as_exit_code(code: int) -> int:
    # A negative code means "killed by signal N"; shells report that as 128 + N.
    return 128 - code if code < 0 else code


def _raise_stop(signum: int, frame: Optional[FrameType]) -> None:
    raise _StopRequested()


def _fit_one_line(text: str) -> str:
    # A status that wraps leaves a trail of half-erased lines behind the spinner.
    limit = max(20, console.err.width - 4)
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    return escape(text)  # uv's output is not rich markup
