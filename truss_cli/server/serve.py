"""Running the model server: config, logging, the load thread, uvicorn, and shutdown.

The model starts loading once uvicorn listens, so the log reads in the order things happen:
uvicorn running, then the model loaded (or failed, then shutdown, then one summary line).
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
from truss_cli.config import ConfigError, load_config
from truss_cli.server import request_body
from truss_cli.server.app import ModelServerApp
from truss_cli.server.loader import ModelHost, ModelState
from truss_cli.server.metrics import Metrics
from truss_cli.server.pipeline import Pipeline
from truss_cli.server.protocol import EXPOSE_ERRORS_ENV

# Long enough for in-flight predictions to finish, shorter than Kubernetes' default 30 s grace.
GRACEFUL_SHUTDOWN_SECONDS = 25
# Threads besides the predict slots: sync preprocess/postprocess, is_healthy and generator
# steps run outside the predict semaphore and must not queue behind a slow predict.
EXTRA_THREADS = 4
EXIT_LOAD_FAILED = 1
EXIT_BAD_CONFIG = 2

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


def serve(model_dir: str, host: str, port: int) -> int:
    """Serve the model in `model_dir` until SIGTERM/SIGINT; returns the process exit code."""
    configure_logging()
    try:
        loaded = load_config(model_dir)
        max_request_bytes = request_body.max_request_bytes(os.environ)
    except (ConfigError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    for warning in loaded.warnings:
        logger.warning(warning)
    config = loaded.config
    root = Path(model_dir).resolve()
    # Truss runs the model with its directory as the working directory (/app in its image),
    # so relative paths such as "data/weights.bin" in model code keep working.
    os.chdir(root)

    model_host = ModelHost(root, config)
    concurrency = config.runtime.predict_concurrency
    executor = ThreadPoolExecutor(max_workers=concurrency + EXTRA_THREADS, thread_name_prefix="model")
    metrics = Metrics(is_ready=lambda: model_host.state is ModelState.READY)

    def make_pipeline() -> Pipeline:
        assert model_host.contract is not None
        return Pipeline(model_host.contract, concurrency, executor, config.runtime.streaming_read_timeout)

    expose_errors = os.environ.get(EXPOSE_ERRORS_ENV) == "1"
    app = ModelServerApp(model_host, make_pipeline, metrics, max_request_bytes, expose_errors)
    server = _Server(
        uvicorn.Config(
            app,
            host=host,
            port=port,
            loop="asyncio",
            lifespan="off",
            access_log=False,  # one log line per request costs more than the rest of the server
            log_config=None,  # keep the logging set up above
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        )
    )
    stop_signal = _capture_stop_signals()
    logger.info("Serving %s on http://%s:%d (predict_concurrency=%d)", root, host, port, concurrency)
    try:
        failed = asyncio.run(_run(server, model_host))
    except KeyboardInterrupt:
        failed = False
    finally:
        executor.shutdown(wait=False, cancel_futures=True)
    if failed:
        # Last, after uvicorn's shutdown lines, so a supervisor can repeat the final line.
        logger.error("%s", model_host.failure)
        return EXIT_LOAD_FAILED
    if stop_signal:
        logger.info("Stopped on %s", signal.Signals(stop_signal[0]).name)
    return 0


class _Server(uvicorn.Server):
    """uvicorn calling `on_listening` once it accepts connections."""

    on_listening: Callable[[], None] = staticmethod(lambda: None)

    async def startup(self, sockets: Optional[list] = None) -> None:
        await super().startup(sockets=sockets)
        if self.started and not self.should_exit:
            self.on_listening()


async def _run(server: _Server, model_host: ModelHost) -> bool:
    """Serve; True if the model failed to load (the server then stops by itself)."""
    failed = False

    def on_load_failure() -> None:
        nonlocal failed
        failed = True
        server.should_exit = True

    loop = asyncio.get_running_loop()
    server.on_listening = lambda: model_host.start_loading(loop, on_load_failure)
    await server.serve()
    if not server.started and not failed:
        # uvicorn could not bind (it has logged why).
        raise SystemExit(1)
    return failed


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
