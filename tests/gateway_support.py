"""A real gateway for the tests: uvicorn serving `Gateway` on port 0 in a thread (no tests of its own).

The routing table lives on the gateway's event loop (its events belong to that loop), so
tests change it through `on_loop`, as the control plane's reconciler will from its own tasks.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Callable, Optional

import httpx
import uvicorn

from test_server_harness import wait_for
from truss_cli.controlplane.gateway import Authorizer, Gateway, RoutingTable


class RunningGateway:
    def __init__(self, table: RoutingTable, authorizer: Optional[Authorizer] = None, max_request_bytes: int = 1 << 20) -> None:
        self.table = table
        self.gateway = Gateway(table, authorizer=authorizer, max_request_bytes=max_request_bytes)
        config = uvicorn.Config(self.gateway, host="127.0.0.1", port=0, lifespan="on", log_level="warning")
        self.server = uvicorn.Server(config)
        self.loop: Optional[asyncio.AbstractEventLoop] = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        wait_for(lambda: self.server.started or not self.thread.is_alive(), "the gateway to listen")
        assert self.server.started, "the gateway did not start"
        self.port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.client = httpx.Client(base_url=self.url, timeout=30)

    def _run(self) -> None:
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self.server.serve())

    def on_loop(self, function: Callable[..., Any], *args: Any) -> None:
        """Run `function(*args)` on the gateway's loop and wait until it ran."""
        done = threading.Event()

        def call() -> None:
            try:
                function(*args)
            finally:
                done.set()

        assert self.loop is not None
        self.loop.call_soon_threadsafe(call)
        assert done.wait(10), "the gateway's loop did not run the call"

    def metric(self, line_prefix: str) -> float:
        for line in self.gateway.render_metrics().splitlines():
            if line.startswith(line_prefix + " "):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    def __enter__(self) -> "RunningGateway":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.client.close()
        self.server.should_exit = True
        self.thread.join(10)
