"""The client's request body on its way to a replica: whole when small, streamed when large.

A body with a Content-Length up to BUFFER_BYTES (every ordinary predict) is read first: one
write to the replica, a Content-Length it can trust, and a retry on another replica costs
nothing. A larger or chunked body is streamed as it arrives, so a 100 MB upload never sits
in the gateway's memory; such a body can be retried only if no byte of it was pulled yet.
"""

from __future__ import annotations

from typing import Any, AsyncIterator, Awaitable, Callable, MutableMapping, Optional

Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]

BUFFER_BYTES = 1024 * 1024


class TooLarge(Exception):
    pass


class ClientGone(Exception):
    pass


async def read_whole(receive: Receive, limit: int) -> bytes:
    first = await receive()
    if first["type"] == "http.disconnect":
        raise ClientGone()
    body = first.get("body", b"")
    if not first.get("more_body"):
        return body  # the common case: one message, no copy
    parts = [body]
    size = len(body)
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise TooLarge()
        parts.append(chunk)
        if not message.get("more_body"):
            return b"".join(parts)


class StreamedBody:
    """An async iterable over the client's body; raises TooLarge past `limit` bytes."""

    def __init__(self, receive: Receive, limit: int) -> None:
        self._receive = receive
        self._limit = limit
        self.started = False
        self.finished = False
        self.too_large = False

    async def chunks(self) -> AsyncIterator[bytes]:
        self.started = True
        size = 0
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                raise ClientGone()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self._limit:
                self.too_large = True
                raise TooLarge()
            if chunk:
                yield chunk
            if not message.get("more_body"):
                self.finished = True
                return


def content_length(headers: list) -> Optional[int]:
    for name, value in headers:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
