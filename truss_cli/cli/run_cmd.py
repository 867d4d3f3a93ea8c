"""`truss run`: serve a model directory as a local process in its own cached environment."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import typer
from rich.markup import escape

from truss_cli.cli import console, edge, signals
from truss_cli.cli.download_progress import DownloadBars
from truss_cli.config import LoadedConfig, load_config
from truss_cli.defaults import DEFAULT_HOST, DEFAULT_PORT, DEFAULT_URL
from truss_cli.local.prepare import PreparedModel, prepare_model
from truss_cli.local.replica import ForeignServer, Replica
from truss_cli.model_check import check_model_dir
from truss_cli.net import check_port_free
from truss_cli.server.protocol import SECRET_ENV_PREFIX
from truss_cli.settings import Settings
from truss_cli.supervision import ReplicaFailed
from truss_cli.unsupported_keys import refuse_unsupported_keys

# As a shell reports a command ended by SIGINT, whether the model was loading or serving.
_INTERRUPTED = 130


def run(
    model_dir: Path = typer.Argument(
        Path("."), metavar="DIRECTORY", help="The model directory (with config.yaml); default: the current directory.", show_default=False
    ),
    port: int = typer.Option(
        DEFAULT_PORT, "--port", "-p", min=0, max=65535, metavar="PORT",
        help="Port the model server listens on; 0 picks a free one (the URL printed says which).",
    ),
    host: str = typer.Option(
        DEFAULT_HOST, "--host", metavar="ADDRESS", help="Address to listen on; 0.0.0.0 makes it reachable from other machines."
    ),
) -> None:
    """Serve a model locally in an isolated, cached Python environment.

    Validates config.yaml, creates (or reuses) a virtual environment with the model's requirements, starts the model server, streams its logs (on stderr) and prints the URL once the model is loaded. Ctrl-C stops it (exit code 130).
    """
    settings = edge.settings()
    with signals.interruptible():
        try:
            code = _run(model_dir.resolve(), host, port, settings)
        except KeyboardInterrupt:
            console.err.print("Interrupted; nothing was left half-built.")
            raise typer.Exit(_INTERRUPTED) from None
    raise typer.Exit(code)


def _run(model_dir: Path, host: str, port: int, settings: Settings) -> int:
    loaded = load_config(model_dir)
    for message in loaded.warnings:
        console.warning(message)
    _warn_about_secret_values(loaded)
    refuse_unsupported_keys(loaded, "run")
    # Seconds, not minutes: a typo in model.py fails before an environment is built.
    check_model_dir(model_dir, loaded.config)
    if port != 0:
        check_port_free(host, port)
    prepared = _prepare(model_dir, loaded, settings)
    with tempfile.TemporaryDirectory(prefix="truss-run-") as state:
        spec = prepared.replica_spec(
            settings,
            status_file=Path(state) / "status.json",
            host=host,
            port=port,
            die_with_parent=True,  # no orphan keeps the port if truss run is killed
            expose_errors=True,  # the person calling is the one who wrote the model
        )
        return _serve(Replica(spec, sink=console.log_sink()))


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


def _prepare(model_dir: Path, loaded: LoadedConfig, settings: Settings) -> PreparedModel:
    started = time.monotonic()
    with console.err.status("Preparing the environment", spinner="dots") as status, DownloadBars(status) as bars:

        def on_progress(step: str) -> None:
            bars.close()  # downloads come first; the environment's steps follow under the spinner
            status.update(_fit_one_line(step))

        prepared = prepare_model(
            model_dir,
            loaded.config,
            settings,
            on_progress=on_progress,
            on_note=console.warning,
            on_download=bars,
        )
    environment = prepared.environment
    if environment.created:
        console.err.print(f"Created environment {environment.path} in {time.monotonic() - started:.1f}s", markup=False)
    else:
        console.err.print(f"[dim]Using cached environment {escape(str(environment.path))}[/]")
    if prepared.data_dir is not None:
        count = len(loaded.config.external_data)
        console.err.print(
            f"[dim]data_dir: {escape(str(prepared.data_dir))} ({escape(loaded.config.data_dir)}/ plus {count} "
            f"external_data file{'s' if count != 1 else ''}, linked; the model directory is left as it is)[/]"
        )
    return prepared


def _serve(replica: Replica) -> int:
    """Start the replica and supervise it; the returned value is the exit code of `truss run`."""
    where = f"port {replica.spec.port}" if replica.spec.port else "a free port"
    console.err.print(f"Starting the model server on {replica.spec.host}, {where}; waiting for load()...")
    try:
        replica.start()
        try:
            url = replica.wait_until_ready()
        except ReplicaFailed as exc:
            console.error(str(exc), hint="the log above has the details")
            return _as_exit_code(exc.exit_code or 1) or 1
        except ForeignServer as exc:
            console.error(str(exc))
            _stop(replica)
            return 1
        console.out.print(f"Model server ready at [bold]{url}[/] (Ctrl-C to stop)")
        url_flag = "" if url == DEFAULT_URL else f" --url {url}"
        console.out.print(f"[dim]Call it with: truss predict{url_flag} -d '<json>'[/]")
        code = replica.wait()
        status = replica.status()
        cause = f": {status.summary}" if status and status.summary else ""
        console.error(f"the model server exited with code {code}{cause}")
        return _as_exit_code(code) or 1
    except KeyboardInterrupt:
        console.err.print("Stopping the model server...")
        _stop(replica)
        console.err.print("Stopped.")
        return _INTERRUPTED


def _stop(replica: Replica) -> None:
    with signals.uninterruptible():
        replica.stop()


def _as_exit_code(code: int) -> int:
    # A negative code means "killed by signal N"; shells report that as 128 + N.
    return 128 - code if code < 0 else code


def _fit_one_line(text: str) -> str:
    # A status that wraps leaves a trail of half-erased lines behind the spinner.
    limit = max(20, console.err.width - 4)
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    return escape(text)  # uv's output is not rich markup
