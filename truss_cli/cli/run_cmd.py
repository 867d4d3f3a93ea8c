"""`truss run`: serve a model directory as a local process in its own cached environment."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.markup import escape

from truss_cli.cli import console, signals
from truss_cli.config import LoadedConfig, TrussConfig, load_config
from truss_cli.defaults import DEFAULT_HOST, DEFAULT_PORT, DEFAULT_URL
from truss_cli.errors import TrussError
from truss_cli.local.environments import Environment, ensure_environment, spec_for_model
from truss_cli.local.interpreters import NoInterpreterError, select_interpreter
from truss_cli.local.replica import Replica, ReplicaExited, replica_environment
from truss_cli.model_check import check_model_dir
from truss_cli.net import check_port_free, local_url
from truss_cli.paths import cache_dir
from truss_cli.server.protocol import SECRET_ENV_PREFIX
from truss_cli.server_bundle import cached_server_bundle

_INTERRUPTED = 130


def run(
    model_dir: Path = typer.Argument(Path("."), help="The model directory (with config.yaml). Default: the current directory."),
    port: int = typer.Option(DEFAULT_PORT, "--port", "-p", min=1, max=65535, help="Port the model server listens on."),
    host: str = typer.Option(DEFAULT_HOST, "--host", help="Address to listen on; 0.0.0.0 makes it reachable from other machines."),
) -> None:
    """Serve a model locally in an isolated, cached Python environment.

    Validates config.yaml, creates (or reuses) a virtual environment with the model's requirements, starts the model server, streams its logs and prints the URL once the model is loaded. Ctrl-C stops it.
    """
    with signals.interruptible():
        try:
            code = _run(model_dir.resolve(), host, port)
        except KeyboardInterrupt:
            console.err.print("Interrupted; nothing was left half-built.")
            raise typer.Exit(_INTERRUPTED) from None
    raise typer.Exit(code)


def _run(model_dir: Path, host: str, port: int) -> int:
    loaded = load_config(model_dir)
    for message in loaded.warnings:
        console.warning(message)
    _warn_about_secret_values(loaded)
    config = loaded.config
    # Seconds, not minutes: a typo in model.py fails before an environment is built.
    check_model_dir(model_dir, config)
    check_port_free(host, port)
    environment = _prepare_environment(model_dir, config)
    bundle = cached_server_bundle(cache_dir())
    replica = Replica(
        [str(environment.python), "-m", "truss_cli.server", str(model_dir), "--host", host, "--port", str(port)],
        env=replica_environment(bundle, config.environment_variables),
        url=local_url(host, port),
        cwd=model_dir,  # as in the image, where the model directory is the working directory
    )
    return _serve(replica)


def _warn_about_secret_values(loaded: LoadedConfig) -> None:
    """Name (never show) secrets whose value is written in config.yaml.

    The model server falls back to those values, as Truss does, so `truss run` works; but an
    image never contains them, so the same model would fail in a container.
    """
    names = [name for name, value in loaded.config.secrets.items() if value not in (None, "")]
    if not names:
        return
    keys = ", ".join(f"secrets.{name}" for name in names)
    variables = ", ".join(f"{SECRET_ENV_PREFIX}{name}" for name in names)
    one = len(names) == 1
    console.warning(
        f"{_shown(loaded.path)}: {keys} {'has a value' if one else 'have values'} in the file; "
        f"`truss run` uses {'it' if one else 'them'} but images never include {'it' if one else 'them'} "
        f"— pass {'it' if one else 'them'} as {variables} instead"
    )


def _shown(path: Path) -> str:
    """`path` relative to the working directory when it is below it, as config errors show it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


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
        console.err.print(f"Created environment {environment.path} in {time.monotonic() - started:.1f}s", soft_wrap=True, markup=False)
    else:
        console.err.print(f"[dim]Using cached environment {escape(str(environment.path))}[/]", soft_wrap=True)
    return environment


def _serve(replica: Replica) -> int:
    """Start the replica and supervise it; the returned value is the exit code of `truss run`."""
    console.err.print(f"Starting the model server on {replica.url}; waiting for load()...", soft_wrap=True)
    try:
        replica.start()
        try:
            replica.wait_until_ready()
        except ReplicaExited as exc:
            console.error(
                f"the model server exited with code {exc.exit_code} before it was ready"
                + (f": {exc.cause}" if exc.cause else ""),
                hint="the log above has the details (load() or the model's import failed)",
            )
            return _as_exit_code(exc.exit_code) or 1
        console.out.print(f"Model server ready at [bold]{replica.url}[/] (Ctrl-C to stop)", soft_wrap=True)
        url_flag = "" if replica.url == DEFAULT_URL else f" --url {replica.url}"
        console.out.print(f"[dim]Call it with: truss predict{url_flag} -d '<json>'[/]", soft_wrap=True)
        code = replica.wait()
        cause = replica.tail.failure_cause()
        console.error(f"the model server exited with code {code}" + (f": {cause}" if cause else ""))
        return _as_exit_code(code) or 1
    except KeyboardInterrupt:
        console.err.print("Stopping the model server...")
        with signals.uninterruptible():
            replica.stop()
        console.err.print("Stopped.")
        return 0


def _as_exit_code(code: int) -> int:
    # A negative code means "killed by signal N"; shells report that as 128 + N.
    return 128 - code if code < 0 else code


def _fit_one_line(text: str) -> str:
    # A status that wraps leaves a trail of half-erased lines behind the spinner.
    limit = max(20, console.err.width - 4)
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    return escape(text)  # uv's output is not rich markup
