"""The gateway's own answers: JSON `{"error", "error_code", "detail"}`, as the management API's,
with a `hint` when there is something to do about it."""

from __future__ import annotations

import json
from typing import Any, Awaitable, Callable, MutableMapping, Optional

Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

_REASONS = {401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
            413: "Payload Too Large", 502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}


async def send_error(
    send: Send, status: int, error_code: str, detail: str, retry_after: Optional[int] = None,
    hint: Optional[str] = None,
) -> int:
    answer = {"error": _REASONS.get(status, "Error"), "error_code": error_code, "detail": detail}
    if hint is not None:
        answer["hint"] = hint
    body = json.dumps(answer).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if retry_after is not None:
        headers.append((b"retry-after", str(retry_after).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
    return status
