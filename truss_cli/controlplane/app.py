"""The control plane's ASGI app: the management API (FastAPI) and the gateway side by side.

A request for an inference path (`/model-...`, or a `Host: model-<id>.` name) goes to the
gateway's plain-ASGI code without FastAPI's routing (it runs on every prediction); anything
else goes to the management API.

uvicorn's access log is off (serve.py): a line per prediction would grow the control plane's
log without bound at any real load (the gateway's metrics count predictions). What changes
state is logged here instead, one line per management call that is not a read.
"""

from __future__ import annotations

import logging
import time
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

from fastapi import Depends, FastAPI
from fastapi.responses import PlainTextResponse

from truss_cli.controlplane.auth import require_admin
from truss_cli.controlplane.dashboard.routes import install as install_dashboard
from truss_cli.controlplane.errors import install_error_handlers
from truss_cli.controlplane.plane import ControlPlane
from truss_cli.controlplane.routes import all_routers

_GATEWAY_PREFIX = "/model-"
_GATEWAY_HOST = b"model-"
_READS = frozenset({"GET", "HEAD", "OPTIONS"})
_access = logging.getLogger("truss.controlplane.access")


def create_app(plane: ControlPlane) -> Any:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await plane.start()
        try:
            yield
        finally:
            await plane.stop()

    api = FastAPI(title="truss-cli control plane", version=plane.version, lifespan=lifespan, redoc_url=None)
    api.state.plane = plane
    install_error_handlers(api)
    for router in all_routers:
        api.include_router(router)
    install_dashboard(api, plane.store)  # the pages at `/` (issue 12)

    @api.get("/metrics", dependencies=[Depends(require_admin)], response_class=PlainTextResponse)
    async def metrics() -> str:
        return plane.gateway.render_metrics() + plane.gauges()

    gateway = plane.gateway

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket") and _is_inference(scope):
            await gateway(scope, receive, send)
        elif scope["type"] == "http" and scope["method"] not in _READS:
            await _logged(api, scope, receive, send)
        else:
            await api(scope, receive, send)

    app.api = api  # type: ignore[attr-defined]
    return app


async def _logged(api: Any, scope: Any, receive: Any, send: Any) -> None:
    """A call that changes state, then one line: method, path, status, time (never a body,
    header or query string: they may carry keys or secrets)."""
    started = time.perf_counter()
    status = 500  # what the client sees when the app fails before it answers

    async def send_status(message: Any) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        await send(message)

    try:
        await api(scope, receive, send_status)
    finally:
        _access.info("%s %s -> %d (%.0f ms)", scope["method"], scope["path"], status,
                     (time.perf_counter() - started) * 1000)


def _is_inference(scope: Any) -> bool:
    if scope["path"].startswith(_GATEWAY_PREFIX):
        return True
    for name, value in scope.get("headers", ()):
        if name == b"host":
            return value.startswith(_GATEWAY_HOST)
    return False
