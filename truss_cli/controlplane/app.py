"""The control plane's ASGI app: the management API (FastAPI) and the gateway side by side.

A request for an inference path (`/model-...`, or a `Host: model-<id>.` name) goes to the
gateway's plain-ASGI code without FastAPI's routing (it runs on every prediction); anything
else goes to the management API.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

from fastapi import Depends, FastAPI
from fastapi.responses import PlainTextResponse

from truss_cli.controlplane.auth import require_admin
from truss_cli.controlplane.errors import install_error_handlers
from truss_cli.controlplane.plane import ControlPlane
from truss_cli.controlplane.routes import all_routers

_GATEWAY_PREFIX = "/model-"
_GATEWAY_HOST = b"model-"


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

    @api.get("/metrics", dependencies=[Depends(require_admin)], response_class=PlainTextResponse)
    async def metrics() -> str:
        return plane.gateway.render_metrics() + plane.gauges()

    gateway = plane.gateway

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket") and _is_inference(scope):
            await gateway(scope, receive, send)
        else:
            await api(scope, receive, send)

    app.api = api  # type: ignore[attr-defined]
    return app


def _is_inference(scope: Any) -> bool:
    if scope["path"].startswith(_GATEWAY_PREFIX):
        return True
    for name, value in scope.get("headers", ()):
        if name == b"host":
            return value.startswith(_GATEWAY_HOST)
    return False
