"""The ASGI application: a lean predict path in front of a FastAPI app for everything else.

Predict requests are answered by plain ASGI code: FastAPI's routing, dependency injection and
exception middleware would add about a tenth of a millisecond to every prediction. All other
routes (liveness, readiness, schema, metrics) are ordinary FastAPI routes; they are not hot.
Every request is counted in the metrics.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Awaitable, Callable, MutableMapping, Optional

import pydantic
import starlette.exceptions
import starlette.requests
import starlette.responses
from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response

from truss_cli.server import codec
from truss_cli.server.loader import ModelHost, ModelState
from truss_cli.server.metrics import Metrics
from truss_cli.server.pipeline import ChunkStream, ChunkTimeout, OutputError, Pipeline
from truss_cli.server.protocol import METRICS_PATH, REPLICA_ID_HEADER, STATUS_PATH
from truss_cli.server.reporter import StatusReporter

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

MODEL_ERROR = b'{"error":"Internal Server Error: the model raised an exception (details are in the server log)"}'
# Truss's paths: any model name works, as does the binary alias and SageMaker's path.
_PREDICT_SUFFIXES = (":predict", ":predict_binary")
_MODELS_PREFIX = "/v1/models/"

logger = logging.getLogger("truss.server")


class HTTPError(Exception):
    def __init__(self, status: int, message: str, detail: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.detail = detail

    def body(self) -> bytes:
        payload: dict[str, Any] = {"error": self.message}
        if self.detail is not None:
            payload["detail"] = self.detail
        return codec.encode_json(payload)


def is_predict_path(path: str) -> bool:
    return (path.startswith(_MODELS_PREFIX) and path.endswith(_PREDICT_SUFFIXES)) or path == "/invocations"


def route_label(path: str) -> str:
    if path.startswith(_MODELS_PREFIX):
        return "schema" if path.endswith("/schema") else "readiness"
    return {"/": "liveness", METRICS_PATH: "metrics", "/ping": "readiness", STATUS_PATH: "status"}.get(path, "other")


class ModelServerApp:
    def __init__(
        self, host: ModelHost, pipeline_factory: Callable[[], Pipeline], metrics: Metrics, status: StatusReporter
    ) -> None:
        self.host = host
        self.metrics = metrics
        self.status = status
        # Encoded once: it goes out with every response.
        self._replica_id_header = (
            None if status.replica_id is None else (REPLICA_ID_HEADER.encode(), status.replica_id.encode())
        )
        self._pipeline_factory = pipeline_factory
        self._pipeline: Optional[Pipeline] = None
        self.routes = build_routes(self)

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
            await self.routes(scope, receive, send)
            return
        path = scope["path"]
        route = "predict" if is_predict_path(path) else route_label(path)
        metrics = self.metrics
        started = time.perf_counter()
        metrics.in_flight[route] += 1
        status = 500
        try:
            if route == "predict":
                status = await self.predict(scope, receive, send)
            else:
                sent: list[int] = []

                async def send_and_note_status(message: MutableMapping[str, Any]) -> None:
                    if message["type"] == "http.response.start":
                        sent.append(message["status"])
                    await send(message)

                await self.routes(scope, receive, send_and_note_status)
                status = sent[0] if sent else 500
        finally:
            metrics.in_flight[route] -= 1
            metrics.observe(route, status, time.perf_counter() - started)

    async def predict(self, scope: Scope, receive: Receive, send: Send) -> int:
        """Answer one predict request; returns the status sent."""
        if scope["method"] != "POST":
            # Without this, GET on a predict path would match the readiness route and answer 200.
            body = codec.encode_json({"error": f"method {scope['method']} not allowed; predict takes POST"})
            return await _send(send, 405, body, extra_headers=[(b"allow", b"POST")])
        stream: Optional[ChunkStream] = None
        try:
            try:
                result, binary = await self._run(scope, receive)
            except HTTPError as error:
                return await _send(send, error.status, error.body())
            except starlette.exceptions.HTTPException as error:  # raised by model code on purpose
                return await _send(send, error.status_code, codec.encode_json({"error": error.detail}))
            except OutputError as error:
                logger.error("%s", error)
                return await _send(send, 500, MODEL_ERROR)
            except Exception:
                logger.exception("Exception in model code while handling a predict request")
                return await _send(send, 500, MODEL_ERROR)
            if isinstance(result, ChunkStream):
                stream = result
                return await self._stream(stream, scope, receive, send)
            if isinstance(result, starlette.responses.Response):
                await result(scope, receive, send)
                return result.status_code
            try:
                if binary:
                    return await _send(send, 200, codec.encode_msgpack(result), codec.MSGPACK_CONTENT_TYPE)
                return await _send(send, 200, codec.encode_json(result))
            except codec.EncodeError as exc:
                logger.error("predict returned an output that cannot be encoded as %s: %s", "msgpack" if binary else "JSON", exc)
                return await _send(send, 500, MODEL_ERROR)
        finally:
            if stream is not None:
                await stream.close()

    async def _run(self, scope: Scope, receive: Receive) -> tuple[Any, bool]:
        pipeline = self.pipeline
        if pipeline is None:
            raise HTTPError(503, self.host.unavailable_reason())
        contract = pipeline.contract
        binary = _content_type(scope) == codec.MSGPACK_CONTENT_TYPE
        request = None
        if contract.reads_body_itself:
            inputs = None
            request = starlette.requests.Request(scope, receive)
        else:
            body = await _read_body(receive)
            inputs = _parse(body, binary, contract.input_type)
            if contract.wants_request:
                request = starlette.requests.Request(scope, receive)
                request._body = body  # Starlette's cache: request.body() returns it without re-reading.
        return await pipeline.run(inputs, request), binary

    async def _stream(self, stream: ChunkStream, scope: Scope, receive: Receive, send: Send) -> int:
        try:
            first = await stream.next()
        except ChunkTimeout:
            _log_chunk_timeout(stream, "its first chunk")
            message = f"the model sent no chunk within runtime.streaming_read_timeout ({stream.read_timeout:g} s)"
            return await _send(send, 504, codec.encode_json({"error": message}))
        except Exception:
            # Nothing sent yet, so the failure can still be a proper 500.
            logger.exception("Exception in model code before the first streamed chunk")
            return await _send(send, 500, MODEL_ERROR)
        content_type = codec.chunk_content_type(first)
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", content_type)]})
        disconnected = asyncio.ensure_future(_wait_for_disconnect(receive))
        try:
            chunk = first
            while chunk is not ChunkStream.END:
                await send({"type": "http.response.body", "body": codec.encode_chunk(chunk), "more_body": True})
                if disconnected.done():
                    logger.info("Client disconnected; stopping the stream")
                    return 200
                chunk = await stream.next()
        except ChunkTimeout:
            # The status is already sent. Returning without the final empty chunk makes the
            # server drop the connection, so the client sees a broken stream, not a success.
            _log_chunk_timeout(stream, "the next chunk")
            return 200
        except Exception:
            logger.exception("Exception in model code while streaming; the response is cut off")
            return 200
        finally:
            disconnected.cancel()
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        return 200


def _log_chunk_timeout(stream: ChunkStream, waiting_for: str) -> None:
    logger.error(
        "predict streamed nothing for %g s while waiting for %s (runtime.streaming_read_timeout); "
        "the response is cut off",
        stream.read_timeout,
        waiting_for,
    )


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


def _content_type(scope: Scope) -> bytes:
    for name, value in scope["headers"]:
        if name == b"content-type":
            return value.split(b";", 1)[0].strip().lower()
    return b""


async def _read_body(receive: Receive) -> bytes:
    message = await receive()
    body = message.get("body", b"")
    if not message.get("more_body", False):
        return body
    parts = [body]
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise HTTPError(499, "client disconnected while sending the request")
        parts.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(parts)


async def _wait_for_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def _parse(body: bytes, binary: bool, input_type: Optional[type[pydantic.BaseModel]]) -> Any:
    if binary:
        try:
            value = codec.decode_msgpack(body)
        except Exception as exc:
            raise HTTPError(400, f"invalid msgpack body: {exc}") from None
        return value if input_type is None else _validate(input_type.model_validate, value)
    if input_type is not None:
        return _validate(input_type.model_validate_json, body)
    try:
        return codec.decode_json(body)
    except ValueError as exc:
        raise HTTPError(400, f"invalid JSON body: {exc}") from None


def _validate(validate: Callable[[Any], Any], value: Any) -> Any:
    try:
        return validate(value)
    except pydantic.ValidationError as exc:
        errors = exc.errors(include_url=False, include_context=False, include_input=False)
        if any(e["type"] == "json_invalid" for e in errors):
            raise HTTPError(400, f"invalid JSON body: {errors[0]['msg']}") from None
        fields = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(body)'}: {e['msg']}" for e in errors)
        raise HTTPError(422, f"invalid input: {fields}", detail=errors) from None


def build_routes(server: ModelServerApp) -> FastAPI:
    app = FastAPI(title="truss-cli model server", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/")
    async def liveness() -> dict:
        return {}

    async def readiness() -> Response:
        host = server.host
        pipeline = server.pipeline
        if pipeline is None:
            return JSONResponse({"error": host.unavailable_reason()}, status_code=503)
        try:
            healthy = await pipeline.is_healthy()
        except Exception:
            logger.exception("is_healthy() raised; reporting not ready")
            healthy = False
        if not healthy:
            return JSONResponse({"error": "model is not ready: is_healthy() returned false"}, status_code=503)
        return JSONResponse({})

    app.add_api_route("/v1/models/{model_name}", readiness, methods=["GET"])
    app.add_api_route("/ping", readiness, methods=["GET"])

    @app.get("/v1/models/{model_name}/schema")
    async def schema(model_name: str) -> Response:
        pipeline = server.pipeline
        if pipeline is None:
            return JSONResponse({"error": "schema not available until the model is loaded"}, status_code=503)
        published = pipeline.contract.schema()
        if published is None:
            return JSONResponse({"error": "this model does not declare pydantic input/output types"}, status_code=404)
        return JSONResponse(published)

    @app.get(STATUS_PATH)
    async def status() -> Response:
        # Answers in every phase, so a supervisor that cannot read the file can ask.
        return Response(server.status.current.to_json(), media_type="application/json")

    @app.get(METRICS_PATH)
    async def metrics() -> Response:
        return Response(server.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    return app
