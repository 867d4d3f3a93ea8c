"""The control API's HTTP side: one request per connection, bearer token, JSON answers.

Only the supervisor's caller (the control plane, a test) talks to it, on a loopback port, a
few times per save: no framework, `custom/http1.py`'s head parser, and the body spooled to a
temporary file (an envelope may carry model weights) up to a limit named in the 413.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import tempfile
from typing import Any, Awaitable, Callable, Optional

from truss_cli.server.custom import http1

logger = logging.getLogger("truss.server")

# (status, JSON body) from a route; the route gets the method, the path and the body (a file).
Route = Callable[[str, str, Any], Awaitable[tuple]]

_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 405: "Method Not Allowed",
            409: "Conflict", 411: "Length Required", 413: "Content Too Large", 422: "Unprocessable Content",
            500: "Internal Server Error", 503: "Service Unavailable"}
_SPOOL_IN_MEMORY = 8 * 1024 * 1024


class ControlAPI:
    def __init__(self, token: str, route: Route, max_body_bytes: int) -> None:
        self._token = ("Bearer " + token).encode()
        self._route = route
        self._max_body_bytes = max_body_bytes

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            status, body = await self._answer(reader)
        except (http1.BadMessage, asyncio.IncompleteReadError, ConnectionError) as exc:
            status, body = 400, {"error_code": "BAD_REQUEST", "detail": f"not an HTTP/1.1 request: {exc}"}
        except Exception:
            logger.exception("The control API failed")
            status, body = 500, {"error_code": "INTERNAL", "detail": "the control API failed; see the replica log"}
        try:
            writer.write(http1.json_response(status, _REASONS.get(status, "Error"), body, [], close=True))
            await writer.drain()
            writer.close()
        except ConnectionError:
            pass

    async def _answer(self, reader: asyncio.StreamReader) -> tuple:
        head = await http1.read_head(reader)
        if head is None:
            raise http1.BadMessage("no request")
        method, target = head.first[0].decode("latin-1"), head.first[1].decode("latin-1")
        if not hmac.compare_digest(_header(head, b"authorization") or b"", self._token):
            return 401, {"error_code": "UNAUTHORIZED", "detail": "send Authorization: Bearer <the replica's control token>"}
        if head.has_body() and head.content_length is None and not head.chunked:
            return 411, {"error_code": "LENGTH_REQUIRED", "detail": "send Content-Length or chunked"}
        if (head.content_length or 0) > self._max_body_bytes:
            return 413, {"error_code": "TOO_LARGE", "detail": f"the body is larger than the {self._max_body_bytes} bytes allowed"}
        with tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY) as body:
            if head.chunked:
                total = 0
                async for data in http1.read_chunked(reader):
                    total += len(data)
                    if total > self._max_body_bytes:
                        return 413, {"error_code": "TOO_LARGE", "detail": f"the body is larger than the {self._max_body_bytes} bytes allowed"}
                    body.write(data)
            elif head.content_length:
                remaining = head.content_length
                while remaining:
                    data = await reader.read(min(remaining, 1 << 20))
                    if not data:
                        raise asyncio.IncompleteReadError(b"", remaining)
                    body.write(data)
                    remaining -= len(data)
            body.seek(0)
            return await self._route(method, target.split("?", 1)[0], body)


def _header(head: http1.Head, name: bytes) -> Optional[bytes]:
    for line in head.lines[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == name:
            return value.strip()
    return None


def error(status: int, code: str, detail: Any) -> tuple:
    return status, {"error_code": code, "detail": detail}


def dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True)
