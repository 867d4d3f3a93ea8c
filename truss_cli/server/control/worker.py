"""One worker generation: load the model, then accept on the inherited listening socket.

Forked from the zygote (zygote.py). The order is what makes a restart invisible to clients:
the worker imports the model and runs `load()` first, tells the supervisor `ready` (or
`failed`), and only on `accept` starts serving on the listening socket the whole replica
shares; the previous generation keeps serving meanwhile. On `stop` it closes its own copy of
the listener (never `shutdown()`: that would stop the socket for every process), answers
what is in flight and what arrives on its open connections with `Connection: close`, and
exits once they are gone or after DRAIN_GRACE_SECONDS. A predict goes to the worker alone:
there is no proxy in the path.

A generation of an empty tree (`awaiting_tree` in its spec: a Kubernetes development pod boots
on an empty emptyDir and the control plane delivers its tree as a first patch) loads nothing:
it serves readiness and predict as 503 "waiting for its tree from the control plane" and its
status as LOADING, so no kubelet marks the pod Ready before it serves the model.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Optional

from truss_cli.server import load_errors, request_body
from truss_cli.server._uvicorn import uvicorn
from truss_cli.server.app import ModelServerApp
from truss_cli.server.control import hotswap, messages
from truss_cli.server.loader import ModelHost, ModelState, import_model_class, import_paths, install_import_paths
from truss_cli.server.metrics import Metrics
from truss_cli.server.pipeline import Pipeline
from truss_cli.server.protocol import DRAIN_SECONDS, EXPOSE_ERRORS_ENV
from truss_cli.server.replica_config import ReplicaConfigError, read_replica_config
from truss_cli.server.reporter import StatusReporter
from truss_cli.server.serve import EXTRA_THREADS
from truss_cli.server.status import FAILED, LOADING, READY

# How long a stopped worker keeps idle keep-alive connections open, so a client that was
# about to send on one gets an answer (with Connection: close) instead of a reset. A pool
# that knows the generation (the gateway's) closes them from its side first.
DRAIN_GRACE_SECONDS = 5.0

logger = logging.getLogger("truss.server")

AWAITING_TREE = "waiting for its tree from the control plane"


class _AwaitingTree(ModelHost):
    """The host of a generation on the empty tree: nothing to load; it says why it waits."""

    def unavailable_reason(self) -> str:
        return f"model is not ready yet: {AWAITING_TREE}"


def warm_imports() -> None:
    """Import what uvicorn loads only when it starts serving (its HTTP and websocket
    protocol modules): the zygote calls this once so no worker pays for it."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        return None

    uvicorn.Config(app, loop="asyncio", lifespan="off", log_config=None).load()


def run(spec: dict) -> int:
    """The worker's whole life, in a freshly forked child of the zygote; its exit code."""
    os.environ.clear()
    os.environ.update(spec["environ"])
    _configure_logging(spec["generation"])
    listener = socket.socket(fileno=spec["listen_fd"])
    root = Path(spec["model_dir"]).resolve()
    os.chdir(root)  # as the model server: relative paths in model code work
    # The tree is the replica's private copy: a traceback names its files as the user's tree does.
    load_errors.name_files_relative_to(root)
    try:
        return asyncio.run(_Worker(spec, listener, root).main())
    except KeyboardInterrupt:
        return 0


def _configure_logging(generation: int) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"%(asctime)s %(levelname)s %(name)s gen={generation}: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)


class _Worker:
    def __init__(self, spec: dict, listener: socket.socket, root: Path) -> None:
        self.spec = spec
        self.listener = listener
        self.root = root
        self.generation = spec["generation"]
        self.server: Optional[Any] = None
        self.app: Optional[_ClosingWhenDraining] = None
        self.serving: Optional[asyncio.Task] = None
        self.stopping = asyncio.Event()

    async def main(self) -> int:
        reader, self.writer = await asyncio.open_unix_connection(self.spec["control_socket"], limit=messages.LIMIT)
        self._send({"event": "hello", "generation": self.generation, "pid": os.getpid()})
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.stopping.set)
        outcome = await self._load()
        self._send(outcome)
        commands = asyncio.ensure_future(self._commands(reader))
        await self.stopping.wait()
        commands.cancel()
        await self._stop()
        return 0

    def _send(self, message: dict) -> None:
        self.writer.write(messages.encode(message))

    async def _load(self) -> dict:
        try:
            self.config = read_replica_config(Path(self.spec["replica_config"]))
        except ReplicaConfigError as exc:
            self.host = None
            return {"event": "failed", "phase": "config", "summary": str(exc), "traceback": None}
        if self.spec.get("awaiting_tree"):
            self.host = _AwaitingTree(self.root, self.config)
            self._build_app()
            return {"event": "waiting", "summary": AWAITING_TREE}
        self.host = host = ModelHost(self.root, self.config)
        # Imported once on its own first, so an import error is told from a load() error.
        phase = "load"
        try:
            install_import_paths(self.root, self.config)
            import_model_class(self.root, self.config)
        except BaseException:
            phase = "import"
        done = asyncio.get_running_loop().create_future()
        started = time.perf_counter()

        def finished() -> None:
            done.get_loop().call_soon_threadsafe(lambda: done.done() or done.set_result(None))

        host.start_loading(asyncio.get_running_loop(), finished, finished)
        await done
        load_ms = (time.perf_counter() - started) * 1000
        self._build_app()
        if host.state is ModelState.READY:
            return {"event": "ready", "load_ms": load_ms}
        return {"event": "failed", "phase": phase, "summary": host.failure, "traceback": host.failure_traceback}

    def _build_app(self) -> None:
        host, config = self.host, self.config
        assert host is not None
        concurrency = config.predict_concurrency
        self.executor = ThreadPoolExecutor(max_workers=concurrency + EXTRA_THREADS, thread_name_prefix="model")
        self.reporter = StatusReporter(None, self.spec.get("replica_id"))
        metrics = Metrics(is_ready=lambda: host.state is ModelState.READY)
        inner = ModelServerApp(
            host,
            self._make_pipeline,
            metrics,
            self.reporter,
            request_body.max_request_bytes(os.environ),
            os.environ.get(EXPOSE_ERRORS_ENV) == "1",
        )
        self.inner = inner
        self.app = _ClosingWhenDraining(inner)
        self._report_status()

    def _make_pipeline(self) -> Pipeline:
        assert self.host is not None and self.host.contract is not None
        return Pipeline(self.host.contract, self.config.predict_concurrency, self.executor, self.config.streaming_read_timeout)

    def _report_status(self, **fields: Any) -> None:
        host = self.host
        if isinstance(host, _AwaitingTree):
            self.reporter.enter(LOADING, port=self.listener.getsockname()[1], tree_hash=self.spec.get("tree_hash"),
                                generation=self.generation, control_port=self.spec.get("control_port"),
                                summary=AWAITING_TREE, **fields)
            return
        failed = host is None or host.state is not ModelState.READY
        self.reporter.enter(
            FAILED if failed else READY,
            port=self.listener.getsockname()[1],
            tree_hash=self.spec.get("tree_hash"),
            generation=self.generation,
            control_port=self.spec.get("control_port"),
            summary=host.failure if failed and host else None,
            traceback=host.failure_traceback if failed and host else None,
            **fields,
        )

    async def _commands(self, reader: asyncio.StreamReader) -> None:
        while True:
            message = await messages.receive(reader)
            if message is None:  # the supervisor is gone: nobody can switch us out; stop
                self.stopping.set()
                return
            command = message.get("command")
            if command == "accept":
                await self._accept()
                self._send({"event": "accepting"})
            elif command == "stop":
                self.stopping.set()
                return
            elif command == "hot_swap":
                self._send(self._hot_swap(message))

    async def _accept(self) -> None:
        config = uvicorn.Config(
            self.app,
            loop="asyncio",
            lifespan="off",
            access_log=False,
            log_config=None,
            timeout_graceful_shutdown=DRAIN_SECONDS,
        )
        config.load()  # its imports were done in the zygote (warm_imports)
        server = uvicorn.Server(config)
        server.lifespan = config.lifespan_class(config)
        await server.startup(sockets=[self.listener])
        self.server = server
        self.serving = asyncio.ensure_future(server.main_loop())

    def _hot_swap(self, message: dict) -> dict:
        host = self.host
        if host is None or host.state is not ModelState.READY:
            return {"event": "swap_refused", "reason": "the running model is not loaded"}
        _, last = import_paths(self.root, self.config)
        code_dirs = [self.root / self.config.model_module_dir, *[Path(p) for p in last]]

        def install() -> None:
            self.inner._pipeline = self._make_pipeline()

        answer = hotswap.swap(host, code_dirs, install)
        if answer["event"] == "swapped":
            self.spec["tree_hash"] = message.get("tree_hash")
            self._report_status()
        return answer

    async def _stop(self) -> None:
        server = self.server
        if server is None:  # never accepted: nothing to drain
            self.listener.close()
            self._send({"event": "closed"})
            return
        for listening in server.servers:
            listening.close()  # our copy of the socket only: the next generation accepts on it
        self.listener.close()
        assert self.app is not None
        self.app.draining = True
        self._send({"event": "closed"})
        deadline = time.monotonic() + DRAIN_GRACE_SECONDS
        while server.server_state.connections and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        server.should_exit = True
        if self.serving is not None:
            await self.serving
        await server.shutdown()


class _ClosingWhenDraining:
    """The app, adding `Connection: close` to every answer once the worker drains, so a
    keep-alive client reconnects (to the next generation) after its answer, never mid-request."""

    def __init__(self, app: ModelServerApp) -> None:
        self.app = app
        self.draining = False

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if not self.draining or scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def closing(message: Any) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), (b"connection", b"close")]}
            await send(message)

        return await self.app(scope, receive, closing)
