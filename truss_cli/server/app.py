"""The ASGI application: plain ASGI code, no web framework.

Requests to the model (predict and Truss's other endpoints, contract.EXTRA_ENDPOINTS) are
found by one dict lookup on the path: FastAPI's routing, dependency injection and exception
middleware would add about a tenth of a millisecond to every prediction. The other routes
(liveness, readiness, schema, status, metrics) are in `probes.py`. Without a framework the
server runs next to whichever FastAPI and pydantic the model's requirements pin (only
Starlette's Request, Response and WebSocket classes are used, for the model's own code).
Every request is counted in the metrics.

When model code raises, the log shows the traceback from the model's first frame on, and the
client gets `{"error": "`predict` raised ValueError: bad input (model/model.py, line 12)"}`
if the server exposes errors (TRUSS_EXPOSE_ERRORS=1, as local runs do), else
`{"error": "`predict` raised an exception; the details are in the server log"}`: messages
can hold the request's data, which a shared server must not hand to other callers.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Awaitable, Callable, MutableMapping, Optional

import starlette.exceptions
import starlette.requests
import starlette.responses

from truss_cli.server import codec, gathering, load_errors, probes, streaming, websocket
from truss_cli.server.loader import ModelHost, ModelState
from truss_cli.server.metrics import Metrics
from truss_cli.server.pipeline import ChunkStream, ChunkTimeout, ModelError, OutputError, Pipeline
from truss_cli.server.protocol import (
    DEFAULT_MAX_REQUEST_BYTES,
    ENDPOINT_PATHS,
    PREDICT_PATH,
    REPLICA_ID_HEADER,
    WEBSOCKET_PATH,
)
from truss_cli.server.reporter import StatusReporter
from truss_cli.server.request_body import HTTPError, content_headers, limited_receive, parse, read_body, too_large

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

# Truss's paths: any model name works, as does the binary alias and SageMaker's path.
_PREDICT_SUFFIXES = (":predict", ":predict_binary")
_MODELS_PREFIX = "/v1/models/"
# Path -> the model method that answers it; predict's aliases are matched by is_predict_path.
_MODEL_ROUTES = {PREDICT_PATH: "predict", **ENDPOINT_PATHS}
_MODEL_METHODS = frozenset(_MODEL_ROUTES.values())

logger = logging.getLogger("truss.server")


def is_predict_path(path: str) -> bool:
    return (path.startswith(_MODELS_PREFIX) and path.endswith(_PREDICT_SUFFIXES)) or path == "/invocations"


def route_label(path: str) -> str:
    """The `route` label of a request in the metrics: a probe's name, or "other"."""
    return probes.probe_name(path) or "other"


class ModelServerApp:
    def __init__(
        self,
        host: ModelHost,
        pipeline_factory: Callable[[], Pipeline],
        metrics: Metrics,
        status: StatusReporter,
        max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
        expose_errors: bool = False,
    ) -> None:
        self.host = host
        self.metrics = metrics
        self.status = status
        self.max_request_bytes = max_request_bytes
        self.expose_errors = expose_errors
        # Encoded once: it goes out with every response.
        self._replica_id_header = (
            None if status.replica_id is None else (REPLICA_ID_HEADER.encode(), status.replica_id.encode())
        )
        self._pipeline_factory = pipeline_factory
        self._pipeline: Optional[Pipeline] = None
        streaming.hide_uvicorn_line_for_cut_offs()

    @property
    def pipeline(self) -> Optional[Pipeline]:
        # Built on first use once the model is ready: its semaphore belongs to the server's loop.
        if self._pipeline is None and self.host.state is ModelState.READY:
            self._pipeline = self._pipeline_factory()
        return self._pipeline

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._replica_id_header is not None:
            send = _adding_header(send, self._replica_id_header)
        if scope["type"] != "http":
            if scope["type"] == "websocket":
                if scope["path"] == WEBSOCKET_PATH:
                    await websocket.serve(self.host, self.pipeline, self.expose_errors, scope, receive, send)
                else:  # refused before the upgrade (the server answers 403)
                    await send({"type": "websocket.close", "code": 1000})
            return  # lifespan is off: no other scope type arrives
        path = scope["path"]
        route = _MODEL_ROUTES.get(path)
        if route is None:
            route = "predict" if is_predict_path(path) else route_label(path)
        metrics = self.metrics
        started = time.perf_counter()
        metrics.in_flight[route] += 1
        status = 500
        try:
            if route in _MODEL_METHODS:
                status = await self.call_model(route, scope, receive, send)
            else:
                status = await probes.answer(self, None if route == "other" else route, scope["method"], send)
        finally:
            metrics.in_flight[route] -= 1
            metrics.observe(route, status, time.perf_counter() - started)

    async def call_model(self, name: str, scope: Scope, receive: Receive, send: Send) -> int:
        """Answer one request with the model method `name`; returns the status sent."""
        if scope["method"] != "POST":
            # Without this, GET on a predict path would match the readiness route and answer 200.
            body = codec.encode_json({"error": f"method {scope['method']} not allowed; {scope['path']} takes POST"})
            return await _send(send, 405, body, extra_headers=[(b"allow", b"POST")])
        stream: Optional[ChunkStream] = None
        try:
            try:
                result, binary = await self._run(name, scope, receive)
            except HTTPError as error:
                return await _send(send, error.status, error.body())
            except starlette.exceptions.HTTPException as error:  # raised by model code on purpose
                return await _send(send, error.status_code, codec.encode_json({"error": error.detail}))
            except ModelError as error:
                return await _send(send, 500, self._report(error))
            except OutputError as error:
                logger.error("%s", error)
                return await _send(send, 500, self._output_error_body(name, str(error)))
            if isinstance(result, ChunkStream):
                stream = result
                if gathering.wants_whole_stream(scope):
                    return await self._gathered(stream, binary, receive, send)
                return await self._stream(stream, receive, send)
            if isinstance(result, starlette.responses.Response):
                await result(scope, receive, send)
                return result.status_code
            try:
                if binary:
                    return await _send(send, 200, codec.encode_msgpack(result), codec.MSGPACK_CONTENT_TYPE)
                return await _send(send, 200, codec.encode_json(result))
            except codec.EncodeError as exc:
                problem = f"`{name}` returned an output that cannot be encoded as {'msgpack' if binary else 'JSON'}: {exc}"
                logger.error("%s", problem)
                return await _send(send, 500, self._output_error_body(name, problem))
        finally:
            if stream is not None:
                await stream.close()

    async def _run(self, name: str, scope: Scope, receive: Receive) -> tuple[Any, bool]:
        pipeline = self.pipeline
        if pipeline is None:
            raise HTTPError(503, self.host.unavailable_reason())
        endpoint = pipeline.contract.endpoints.get(name)
        if endpoint is None:
            raise HTTPError(404, f"the model does not define `{name}`, so {scope['path']} is not served")
        media_type, length = content_headers(scope)
        limit = self.max_request_bytes
        if length is not None and length > limit:
            raise too_large(limit)
        binary = media_type == codec.MSGPACK_CONTENT_TYPE
        request = None
        if endpoint.reads_body_itself:
            inputs = None
            request = starlette.requests.Request(scope, limited_receive(receive, limit))
        else:
            body = await read_body(receive, limit)
            inputs = parse(body, binary, endpoint.input_type)
            if endpoint.wants_request:
                request = starlette.requests.Request(scope, receive)
                request._body = body  # Starlette's cache: request.body() returns it without re-reading.
        return await pipeline.run(endpoint, inputs, request), binary

    async def _stream(self, stream: ChunkStream, receive: Receive, send: Send) -> int:
        try:
            first = await stream.next()
        except ChunkTimeout:
            streaming.log_chunk_timeout(stream, "its first chunk", "answering 504")
            message = f"the model sent no chunk within runtime.streaming_read_timeout ({stream.read_timeout:g} s)"
            return await _send(send, 504, codec.encode_json({"error": message}))
        except ModelError as error:
            # Nothing sent yet, so the failure can still be a proper 500.
            return await _send(send, 500, self._report(error, "before its first chunk"))
        except starlette.exceptions.HTTPException as error:  # raised by model code on purpose
            return await _send(send, error.status_code, codec.encode_json({"error": error.detail}))
        return await streaming.send_stream(stream, first, receive, send, self._report)

    async def _gathered(self, stream: ChunkStream, binary: bool, receive: Receive, send: Send) -> int:
        """The whole stream as one answer (gathering.py); nothing is sent before it ends."""
        try:
            text = await gathering.gather(stream, receive)
        except ChunkTimeout:
            streaming.log_chunk_timeout(stream, "the next chunk", "answering 504 (Accept: application/json)")
            message = f"the model sent no chunk within runtime.streaming_read_timeout ({stream.read_timeout:g} s)"
            return await _send(send, 504, codec.encode_json({"error": message}))
        except ModelError as error:
            sent = "1 chunk" if stream.chunks_sent == 1 else f"{stream.chunks_sent} chunks"
            return await _send(send, 500, self._report(error, f"after {sent}, gathered for Accept: application/json"))
        except starlette.exceptions.HTTPException as error:  # raised by model code on purpose
            return await _send(send, error.status_code, codec.encode_json({"error": error.detail}))
        except gathering.NotText as error:
            logger.error("%s", error)
            return await _send(send, 500, self._output_error_body(stream.step, str(error)))
        except gathering.ClientGone:
            logger.info("Client disconnected; stopping the stream")
            return 499
        if binary:
            return await _send(send, 200, codec.encode_msgpack(text), codec.MSGPACK_CONTENT_TYPE)
        return await _send(send, 200, codec.encode_json(text))

    def _report(self, error: ModelError, context: str = "") -> bytes:
        """Log a failure of model code (one line, then the user's traceback); the error body."""
        description = f"`{error.step}` raised {load_errors.describe(error.error, self.host.model_dir)}"
        logger.error("%s%s\n%s", description, f" {context}" if context else "", load_errors.user_traceback(error.error))
        if self.expose_errors:
            return codec.encode_json({"error": description})
        return codec.encode_json({"error": f"`{error.step}` raised an exception; the details are in the server log"})

    def _output_error_body(self, name: str, problem: str) -> bytes:
        if self.expose_errors:
            return codec.encode_json({"error": problem})
        return codec.encode_json({"error": f"`{name}` returned an output the server cannot send; the details are in the server log"})


def _adding_header(send: Send, header: tuple[bytes, bytes]) -> Send:
    """`send`, adding `header` to the response's (or websocket accept's) headers."""

    async def send_with_header(message: MutableMapping[str, Any]) -> None:
        if message["type"] in ("http.response.start", "websocket.accept"):
            # A new dict and list: a Response object's own header list may be sent again.
            message = {**message, "headers": [*message.get("headers", ()), header]}
        await send(message)

    return send_with_header


async def _send(
    send: Send,
    status: int,
    body: bytes,
    content_type: bytes = codec.JSON_CONTENT_TYPE,
    extra_headers: Optional[list] = None,
) -> int:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    if extra_headers:
        headers += extra_headers
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
    return status
