"""`serve`: run the control plane in the foreground and say where it listens.

The listening socket is bound here (port 0 allowed) and handed to uvicorn, so the real
address is known without guessing; `<data_dir>/controlplane.json` is written once uvicorn
accepts connections and removed on a clean stop. SIGTERM: uvicorn stops accepting and
drains, the lifespan stops the build workers; replicas keep running for the next start.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import socket
from datetime import datetime, timezone
from pathlib import Path

import uvicorn

from truss_cli.controlplane.app import create_app
from truss_cli.controlplane.plane import ControlPlane, Options
from truss_cli.controlplane.reconciler import DEV_IDLE_SECONDS
from truss_cli.controlplane.runtimes.kubernetes.selection import KubernetesOptions
from truss_cli.controlplane.runtimes.select import select_runtime
from truss_cli.controlplane.store import Store
from truss_cli.net import local_url
from truss_cli.settings import Settings

STATE_FILE = "controlplane.json"


def serve(settings: Settings, host: str, port: int, runtime_kind: str, database_url: str | None,
          build_workers: int, dev_idle_seconds: float = DEV_IDLE_SECONDS,
          kubernetes: KubernetesOptions | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    data_dir = settings.data_dir
    store = Store.open(data_dir, database_url)
    selection = select_runtime(runtime_kind, settings, kubernetes)
    plane = ControlPlane(store, selection.runtime, selection.reason,
                         Options(build_workers=build_workers, dev_idle_seconds=dev_idle_seconds))
    app = create_app(plane)
    sock = listening_socket(host, port)
    url = local_url(host, sock.getsockname()[1])
    server = uvicorn.Server(uvicorn.Config(app, log_level="info", access_log=False, lifespan="on",
                                           timeout_graceful_shutdown=10))
    state_file = data_dir / STATE_FILE

    async def announce() -> None:
        while not server.started:
            if server.should_exit:
                return
            await asyncio.sleep(0.02)
        # Everything alive now (the imported modules, the app, the plane's parts) lives as long
        # as the process: kept out of the collector's full passes, which otherwise walk all of it
        # (~90-280 ms on this 2-core machine under load) and stalled whichever request was in
        # flight: the dashboard's busiest pages took 100-300 ms every few seconds
        # (docs/performance.md, "Dashboard: every page"). A list splice: costs nothing here.
        gc.freeze()
        record = {"pid": os.getpid(), "url": url, "runtime": selection.runtime.kind,
                  "database": store.database, "started_at": datetime.now(timezone.utc).isoformat()}
        _write_atomically(state_file, json.dumps(record))
        logging.getLogger("truss.controlplane").info("listening at %s (runtime %s)", url, selection.reason)

    async def main() -> None:
        task = asyncio.create_task(announce())
        try:
            await server.serve(sockets=[sock])
        finally:
            task.cancel()
            state_file.unlink(missing_ok=True)

    asyncio.run(main())


def listening_socket(host: str, port: int) -> socket.socket:
    """The control plane's listening socket (port 0: any), bound, for uvicorn to listen on."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not the default 0: asyncio sets TCP_NODELAY only on connections accepted from
    # a socket that says it is TCP. Without it every answer's second write (uvicorn writes the
    # head, then the body) waited for the client's delayed ACK: a keep-alive client whose request
    # also goes out in two writes (Python's http.client) waited ~40 ms per request.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


def _write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text)
    os.replace(temporary, path)
