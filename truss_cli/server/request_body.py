"""Reading a request's body within the size limit, and turning it into the model's input.

The limit (`TRUSS_MAX_REQUEST_BYTES`) is checked from Content-Length before anything is read,
and again while a chunked body arrives: reading stops at the limit, so the server never holds
more than that. The unread rest is discarded by uvicorn, which keeps the connection usable and
lets the client read the 413 instead of a reset.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable, Mapping, MutableMapping, Optional

from truss_cli.server import codec, typed_io
from truss_cli.server.protocol import DEFAULT_MAX_REQUEST_BYTES, MAX_REQUEST_BYTES_ENV

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]


class HTTPError(Exception):
    """A request the server refuses; `message` goes to the client as `{"error": message}`."""

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


def too_large(limit: int) -> HTTPError:
    return HTTPError(413, f"request body is larger than the limit of {_size(limit)} ({MAX_REQUEST_BYTES_ENV})")


def _size(count: int) -> str:
    for unit, factor in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if count >= factor and count % factor == 0:
            return f"{count // factor} {unit}"
    return f"{count} bytes"


def content_headers(scope: Scope) -> tuple[bytes, Optional[int]]:
    """(the media type, lowercased without parameters; the Content-Length if given)."""
    media_type, length = b"", None
    for name, value in scope["headers"]:
        if name == b"content-type":
            media_type = value.split(b";", 1)[0].strip().lower()
        elif name == b"content-length":
            length = int(value)  # the HTTP parser has refused anything but digits
    return media_type, length


async def read_body(receive: Receive, limit: int) -> bytes:
    message = await receive()
    body = message.get("body", b"")
    if len(body) > limit:
        raise too_large(limit)
    if not message.get("more_body", False):
        return body
    parts, size = [body], len(body)
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise HTTPError(499, "client disconnected while sending the request")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        parts.append(chunk)
        if not message.get("more_body", False):
            return b"".join(parts)


def limited_receive(receive: Receive, limit: int) -> Receive:
    """`receive` for a model that reads the body itself (`await request.body()`): the limit
    still holds, raised as HTTPError from inside the model's call."""
    received = 0

    async def receive_within_limit() -> MutableMapping[str, Any]:
        nonlocal received
        message = await receive()
        received += len(message.get("body", b""))
        if received > limit:
            raise too_large(limit)
        return message

    return receive_within_limit


def parse(body: bytes, binary: bool, input_type: Optional[type]) -> Any:
    """The model's input: decoded JSON or msgpack, validated into `input_type` if it has one."""
    if binary:
        try:
            value = codec.decode_msgpack(body)
        except Exception as exc:
            raise HTTPError(400, f"invalid msgpack body: {exc}") from None
        return value if input_type is None else _validated(typed_io.validate_python, input_type, value)
    if input_type is not None:
        return _validated(typed_io.validate_json, input_type, body)
    try:
        return codec.decode_json(body)
    except ValueError as exc:
        raise HTTPError(400, f"invalid JSON body: {exc}") from None


def _validated(validate: Callable[[type, Any], Any], input_type: type, value: Any) -> Any:
    try:
        return validate(input_type, value)
    except typed_io.InvalidJSON as exc:
        raise HTTPError(400, f"invalid JSON body: {exc}") from None
    except typed_io.InvalidInput as exc:
        raise HTTPError(422, f"invalid input: {exc.fields('(body)')}", detail=exc.errors) from None


def max_request_bytes(environ: Mapping[str, str]) -> int:
    """The limit from the environment (read once, at server start), or the default."""
    raw = environ.get(MAX_REQUEST_BYTES_ENV)
    if raw is None or raw == "":
        return DEFAULT_MAX_REQUEST_BYTES
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value <= 0:
        raise ValueError(f"{MAX_REQUEST_BYTES_ENV} must be a positive whole number of bytes (e.g. 134217728), not {raw!r}")
    return value
