"""Running the model server: config, logging, the load thread, uvicorn, status and shutdown.

The model starts loading once uvicorn listens, so the log reads in the order things happen:
uvicorn running, then the model loaded (or failed, then shutdown, then one summary line).
Every phase change is also reported as a structured status (`reporter.py`), which is what
supervisors read.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Optional

from truss_cli.server._uvicorn import uvicorn
from truss_cli.server import request_body
from truss_cli.server.app import ModelServerApp
from truss_cli.server.loader import ModelHost, ModelState
from truss_cli.server.metrics import Metrics
from truss_cli.server.pipeline import Pipeline
from truss_cli.server.protocol import DRAIN_SECONDS, EXIT_BAD_CONFIG, EXIT_LOAD_FAILED, EXPOSE_ERRORS_ENV
from truss_cli.server.replica_config import ReplicaConfigError, read_replica_config
from truss_cli.server.reporter import StatusReporter
from truss_cli.server.status import FAILED, LOADING, READY, STOPPING

# Threads besides the predict slots: sync preprocess/postprocess, is_healthy and generator
# steps run outside the predict semaphore and must not queue behind a slow predict.
EXTRA_THREADS = 4

logger = logging.getLogger("truss.server")


def configure_logging() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    # Model code's print() should show up as it happens, also when stdout is a pipe.
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(line_buffering=True)


def serve(
    model_dir: str,
    replica_config: Path,
    host: str,
    port: int,
    *,
    status_file: Optional[Path] = None,
    replica_id: Optional[str] = None,
    stay_up_on_load_failure: bool = False,
) -> int:
    """Serve the model in `model_dir` until SIGTERM/SIGINT; returns the process exit code.

    `replica_config` is the file the CLI side wrote from config.yaml (`replica_config.py`).

    `port` 0 binds any free port (reported in the status and the log). With
    `stay_up_on_load_failure` a failed load leaves the server answering, reporting the failure.
    """
    configure_logging()
    reporter = StatusReporter(status_file, replica_id)
    try:
        reporter.begin()
    except OSError as exc:
        print(f"error: cannot write the status file {status_file}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    try:
        config = read_replica_config(replica_config)
        max_request_bytes = request_body.max_request_bytes(os.environ)
        root = Path(model_dir).resolve()
        if not root.is_dir():
            raise ValueError(f"{model_dir}: no such directory")
    except (ReplicaConfigError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        reporter.enter(FAILED, summary=f"invalid config: {exc}")
        return EXIT_BAD_CONFIG
    # Truss runs the model with its directory as the working directory (/app in its image),
    # so relative paths such as "data/weights.bin" in model code keep working.
    os.chdir(root)

    model_host = ModelHost(root, config)
    concurrency = config.predict_concurrency
    executor = ThreadPoolExecutor(max_workers=concurrency + EXTRA_THREADS, thread_name_prefix="model")
    metrics = Metrics(is_ready=lambda: model_host.state is ModelState.READY)

    def make_pipeline() -> Pipeline:
        assert model_host.contract is not None
        return Pipeline(model_host.contract, concurrency, executor, config.streaming_read_timeout)

    # The replica's own environment is its settings' edge (an image's CMD is fixed).
    expose_errors = os.environ.get(EXPOSE_ERRORS_ENV) == "1"
    app = ModelServerApp(model_host, make_pipeline, metrics, reporter, max_request_bytes, expose_errors)
    server = _Server(
        uvicorn.Config(
            app,
            host=host,
            port=port,
            loop="asyncio",
            lifespan="off",
            access_log=False,  # one log line per request costs more than the rest of the server
            log_config=None,  # keep the logging set up above
            timeout_graceful_shutdown=DRAIN_SECONDS,
        )
    )
    stop_signal = _capture_stop_signals()
    try:
        failed = asyncio.run(_run(server, model_host, reporter, stay_up_on_load_failure, concurrency))
    except KeyboardInterrupt:
        failed = False
    except SystemExit as exc:
        if not server.started:
            reporter.enter(FAILED, summary=_listen_failure(host, port, exc))
        raise
    finally:
        executor.shutdown(wait=False, cancel_futures=True)
    if failed:
        # Last, after uvicorn's shutdown lines, so a human reading the log sees the cause at
        # the end (supervisors read it from the status).
        logger.error("%s", model_host.failure)
        return EXIT_LOAD_FAILED
    if stop_signal:
        logger.info("Stopped on %s", signal.Signals(stop_signal[0]).name)
    return 0


class _Server(uvicorn.Server):
    """uvicorn calling `on_listening` once it accepts connections, and `on_stopping` once it
    no longer does (before the drain)."""

    on_listening: Callable[[], None] = staticmethod(lambda: None)
    on_stopping: Callable[[], None] = staticmethod(lambda: None)

    async def startup(self, sockets: Optional[list] = None) -> None:
        await super().startup(sockets=sockets)
        if self.started and not self.should_exit:
            self.on_listening()

    async def shutdown(self, sockets: Optional[list] = None) -> None:
        # uvicorn closes its listeners first thing too (closing twice is harmless); doing it
        # here means that a "stopping" status promises new connections are refused.
        for listener in self.servers:
            listener.close()
        self.on_stopping()
        await super().shutdown(sockets=sockets)

    def bound_port(self) -> int:
        return self.servers[0].sockets[0].getsockname()[1]


async def _run(
    server: _Server, model_host: ModelHost, reporter: StatusReporter, stay_up: bool, concurrency: int
) -> bool:
    """Serve; True if the model failed to load and the server stopped because of it."""
    exiting_on_failure = False

    def on_ready() -> None:
        reporter.enter(READY)

    def on_failure() -> None:
        nonlocal exiting_on_failure
        reporter.enter(FAILED, summary=model_host.failure, traceback=model_host.failure_traceback)
        if stay_up:
            logger.error("%s; serving the failure until stopped", model_host.failure)
        else:
            exiting_on_failure = True
            server.should_exit = True

    def on_listening() -> None:
        port = server.bound_port()
        logger.info(
            "Serving %s on http://%s:%d (predict_concurrency=%d)", model_host.model_dir, server.config.host, port, concurrency
        )
        reporter.enter(LOADING, port=port)
        model_host.start_loading(asyncio.get_running_loop(), on_ready, on_failure)

    def on_stopping() -> None:
        if not exiting_on_failure:  # the status keeps saying why it failed
            reporter.enter(STOPPING)

    server.on_listening = on_listening
    server.on_stopping = on_stopping
    await server.serve()
    if not server.started and not exiting_on_failure:
        # uvicorn could not bind (it has logged why).
        raise SystemExit(1)
    return exiting_on_failure


def _listen_failure(host: str, port: int, exc: SystemExit) -> str:
    # uvicorn logs the OSError and exits from inside its handler, so the OSError is the context.
    cause = exc.__context__
    # asyncio's strerror repeats the address; the errno's own text is the reason alone.
    reason = os.strerror(cause.errno) if isinstance(cause, OSError) and cause.errno else "see the server log"
    return f"cannot listen on {host}:{port}: {reason}"


def _capture_stop_signals() -> list:
    """Note SIGTERM/SIGINT instead of dying from them.

    uvicorn handles them itself (graceful shutdown), then re-raises the signal to whatever
    handler was installed before it started; with this one the process exits 0 cleanly
    instead of printing a KeyboardInterrupt traceback or dying from SIGTERM.
    """
    received: list = []

    def note(signum: int, frame: Optional[object]) -> None:
        received.append(signum)

    signal.signal(signal.SIGTERM, note)
    signal.signal(signal.SIGINT, note)
    return received
