"""The routes around the model: liveness, readiness, `loaded`, schema, status and metrics.

Plain ASGI, like the model routes: no web framework's routing is needed for a handful of
fixed paths, and none is imported, so the server runs with whichever FastAPI (or none) the
model's environment has. Every answer is JSON except the metrics' Prometheus text; any
model name is accepted in Truss's `/v1/models/{model_name}...` paths.
"""

from __future__ import annotations

import logging
from typing import Any, Awaitable, Callable, MutableMapping, Optional, Protocol

from truss_cli.server import codec
from truss_cli.server.loader import ModelHost, ModelState
from truss_cli.server.metrics import Metrics
from truss_cli.server.pipeline import Pipeline
from truss_cli.server.protocol import METRICS_PATH, STATUS_PATH
from truss_cli.server.reporter import StatusReporter


class ProbedServer(Protocol):
    """What the probes read of the server (app.ModelServerApp is one), named here so this
    module does not import the app that dispatches to it."""

    host: ModelHost
    metrics: Metrics
    status: StatusReporter

    @property
    def pipeline(self) -> Optional[Pipeline]: ...

Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
Answer = tuple[int, bytes, bytes]  # status, content type, body

_MODELS_PREFIX = "/v1/models/"
_METRICS_CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"

logger = logging.getLogger("truss.server")


def probe_name(path: str) -> Optional[str]:
    """Which probe answers `path` ("liveness", "readiness", ...), None if none does."""
    if path.startswith(_MODELS_PREFIX):
        model_name, _, rest = path[len(_MODELS_PREFIX) :].partition("/")
        if not model_name:
            return None
        return {"": "readiness", "loaded": "loaded", "schema": "schema"}.get(rest)
    return {"/": "liveness", "/ping": "readiness", METRICS_PATH: "metrics", STATUS_PATH: "status"}.get(path)


async def answer(server: ProbedServer, name: Optional[str], method: str, send: Send) -> int:
    """Send the answer of probe `name` (None: no such route); returns the status sent."""
    if name is None:
        status, content_type, body = 404, codec.JSON_CONTENT_TYPE, codec.encode_json({"error": "no such route"})
    elif method not in ("GET", "HEAD"):
        status, content_type, body = 405, codec.JSON_CONTENT_TYPE, codec.encode_json({"error": f"method {method} not allowed"})
    else:
        status, content_type, body = await _PROBES[name](server)
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    if status == 405:
        headers.append((b"allow", b"GET, HEAD"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if method == "HEAD" else body})
    return status


def _json(status: int, value: Any) -> Answer:
    return status, codec.JSON_CONTENT_TYPE, codec.encode_json(value)


async def _liveness(server: ProbedServer) -> Answer:
    return _json(200, {})


async def _readiness(server: ProbedServer) -> Answer:
    pipeline = server.pipeline
    if pipeline is None:
        return _json(503, {"error": server.host.unavailable_reason()})
    try:
        healthy = await pipeline.is_healthy()
    except Exception:
        logger.exception("is_healthy() raised; reporting not ready")
        healthy = False
    if not healthy:
        return _json(503, {"error": "model is not ready: is_healthy() returned false"})
    return _json(200, {})


async def _loaded(server: ProbedServer) -> Answer:
    # As Truss: load() has finished, whatever is_healthy() says (readiness asks it).
    if server.host.state is ModelState.READY:
        return _json(200, {})
    return _json(503, {"error": server.host.unavailable_reason()})


async def _schema(server: ProbedServer) -> Answer:
    pipeline = server.pipeline
    if pipeline is None:
        return _json(503, {"error": "schema not available until the model is loaded"})
    published = pipeline.contract.schema()
    if published is None:
        return _json(404, {"error": "this model does not declare pydantic input/output types"})
    return _json(200, published)


async def _status(server: ProbedServer) -> Answer:
    # Answers in every phase, so a supervisor that cannot read the file can ask.
    return 200, codec.JSON_CONTENT_TYPE, server.status.current.to_json().encode()


async def _metrics(server: ProbedServer) -> Answer:
    return 200, _METRICS_CONTENT_TYPE, server.metrics.render().encode()


_PROBES: dict[str, Callable[[ProbedServer], Awaitable[Answer]]] = {
    "liveness": _liveness,
    "readiness": _readiness,
    "loaded": _loaded,
    "schema": _schema,
    "status": _status,
    "metrics": _metrics,
}
