"""The way to a replica: a raw asyncio HTTP/1.1 client over pooled keep-alive connections.

The upstream client is a large part of the gateway's overhead. With aiohttp's client the
gateway spent 445-506 µs of CPU per predict, with this one 258-288 µs (docs/performance.md):
aiohttp wraps what is one small write and one small read in sessions, connectors and a
response object with its own stream; httpx costs more still. This client writes the request
head and body in one write, reads the head with http1.read_head (the custom server's parser:
one HTTP/1.1 parser in the repo) and hands the body over whole or as it arrives. Pooling:
pool.py.

Which failures move a request to another replica: only one that happened before the
request was sent, a connection that could not be made (refused, unreachable, connect
timeout): `ConnectFailed`. Anything later (a reset while writing, or while waiting for the
answer) may have reached the model, and a predict is not known to be idempotent (a request
that crashes its replica would crash the next one too), so it is reported: `UpstreamBroken`.
One exception, made safe: a pooled connection the replica closed while it sat idle. Those
are found before use (pool.py), and when the replica closes one just as the request goes
out, the request, still in memory, is sent again on a new connection to the same replica;
if that replica cannot be reached any more, it may have died with the request, so that is
reported too, not moved.
"""

from __future__ import annotations

import asyncio
import re
import ssl
from typing import AsyncIterator, Optional, Union
from urllib.parse import quote, urlsplit

from truss_cli.controlplane.gateway.headers import response_headers
from truss_cli.controlplane.gateway.pool import Connection, ConnectionPool
from truss_cli.server.custom import http1
from truss_cli.server.custom.http1 import BadMessage, Head

Body = Union[bytes, AsyncIterator[bytes]]

_CRLF = b"\r\n"
_LAST_CHUNK = b"0\r\n\r\n"
_READ_SIZE = 65536
_NO_BODY_STATUSES = frozenset({204, 304})
_MAX_ORIGINS = 1024
# ASGI gives the path percent-decoded: what is not plainly safe in a request line is quoted again.
_PLAIN_PATH = re.compile(r"[A-Za-z0-9/_.~:@!$&'()*+,;=-]*")
_PATH_SAFE = "/:@!$&'()*+,;=~"
# What a connection to a replica can raise on the way; BadMessage: it spoke something else.
_BROKEN = (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, BadMessage)


class ConnectFailed(Exception):
    """The replica could not be reached; nothing was sent, so another replica may take the request."""


class UpstreamBroken(Exception):
    """The exchange failed after the request may have reached the replica."""


class _Origin:
    """A replica URL's parts, parsed once per URL, not per request."""

    __slots__ = ("host", "port", "ssl", "host_header")

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConnectFailed(f"not an http(s) replica URL: {url!r}")
        self.host = parts.hostname
        self.ssl: Optional[ssl.SSLContext] = ssl.create_default_context() if parts.scheme == "https" else None
        self.port = parts.port or (443 if self.ssl else 80)
        self.host_header = b"host: " + parts.netloc.encode("idna") + _CRLF


class Upstream:
    def __init__(self, connect_timeout: float = 5.0) -> None:
        self.connect_timeout = connect_timeout
        self._pool = ConnectionPool()
        self._origins: dict[str, _Origin] = {}

    async def aclose(self) -> None:
        self._pool.close_all()

    def forget(self, origin_url: str) -> None:
        """Drop the pooled connections to `origin_url`; later requests open new ones."""
        self._pool.drop(origin_url)

    async def send(
        self, origin_url: str, target: str, method: str, headers: bytes, body: Optional[Body], length: Optional[int] = None
    ) -> "UpstreamResponse":
        """Send a request to the replica at `origin_url` (`http://host:port`); its response
        with status and headers read, the body not yet.

        `headers`: header lines (headers.request_headers). `body`: None (no body), bytes (sent
        with its length), or chunks: `length` of them when the client said, else chunked.
        """
        origin = self._origins.get(origin_url)
        if origin is None:
            if len(self._origins) >= _MAX_ORIGINS:
                self._origins.clear()  # replicas come and go, each with a URL of its own
            origin = self._origins[origin_url] = _Origin(origin_url)
        head = _request_head(method, target, origin, headers, body, length)
        connection = self._pool.take(origin_url)
        if connection is not None:
            try:
                return await self._exchange(connection, method, head, body, length, origin_url)
            except _Stale:
                if not isinstance(body, (bytes, type(None))):
                    raise UpstreamBroken("the replica closed the connection as the request was sent") from None
            try:
                connection = await self._connect(origin)
            except ConnectFailed as exc:
                raise UpstreamBroken(f"the replica closed the connection with the request and is gone: {exc}") from None
        else:
            connection = await self._connect(origin)
        try:
            return await self._exchange(connection, method, head, body, length, origin_url)
        except _Stale:
            raise UpstreamBroken("the replica closed the connection without answering") from None

    async def _connect(self, origin: _Origin) -> Connection:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(origin.host, origin.port, ssl=origin.ssl, limit=_READ_SIZE), self.connect_timeout
            )
        except asyncio.TimeoutError:
            raise ConnectFailed(f"no connection within {self.connect_timeout:g} s") from None
        except OSError as exc:
            raise ConnectFailed(exc.strerror or str(exc) or type(exc).__name__) from None
        return Connection(reader, writer, tls=origin.ssl is not None)

    async def _exchange(
        self, connection: Connection, method: str, head: bytes, body: Optional[Body], length: Optional[int], origin_url: str
    ) -> "UpstreamResponse":
        """Raises _Stale when the replica closed the connection before a byte of an answer."""
        reader, writer = connection.reader, connection.writer
        answered = False
        try:
            if body is None:
                writer.write(head)
            elif isinstance(body, bytes):
                writer.write(head + body)
            else:
                writer.write(head)
                await _send_stream(writer, body, length)
            await writer.drain()
            response = await http1.read_head(reader)
            while response is not None and response.status < 200 and response.status != 101:
                response = await http1.read_head(reader)  # interim answers (100 Continue): the real one follows
            if response is None:
                raise _Stale()
            answered = True
            return UpstreamResponse(response, method, connection, self._pool, origin_url)
        except (ConnectionResetError, BrokenPipeError, ConnectionAbortedError):
            raise _Stale() from None
        except _BROKEN as exc:
            raise UpstreamBroken(_reason(exc)) from None
        finally:
            if not answered:
                connection.close()


class _Stale(Exception):
    """The replica closed the connection before answering (reset or end of stream, no bytes)."""


class UpstreamResponse:
    """A replica's answer: `status` and `headers` (as the client gets them) are read; the body
    is read by `read()` (a Content-Length body, whole) or `chunks()` (as it arrives). Every
    response must be `release()`d: a fully read body gives the connection back to the pool."""

    __slots__ = ("status", "headers", "content_length", "_head", "_connection", "_pool", "_origin", "_left", "_done")

    def __init__(self, head: Head, method: str, connection: Connection, pool: ConnectionPool, origin: str) -> None:
        self._head = head
        self.status = head.status
        self.headers = response_headers(head.lines[1:])
        self._connection: Optional[Connection] = connection
        self._pool = pool
        self._origin = origin
        if self.status in _NO_BODY_STATUSES:
            self.content_length: Optional[int] = 0
            # A 304's length is the one a 200 would have; uvicorn (httptools) would then wait
            # for that body from us. A 204 has none to speak of.
            self.headers = [(name, value) for name, value in self.headers if name != b"content-length"]
        elif method == "HEAD":
            self.content_length = 0
        elif head.chunked:
            self.content_length = None
        else:
            self.content_length = head.content_length  # None: the body ends when the replica closes
        self._done = self.content_length == 0

    async def read(self) -> bytes:
        """The whole body of a response with a Content-Length."""
        assert self.content_length is not None and self._connection is not None
        if self._done:
            return b""
        try:
            data = await self._connection.reader.readexactly(self.content_length)
        except _BROKEN as exc:
            raise UpstreamBroken(_reason(exc)) from None
        self._done = True
        return data

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives (a chunked body's data, without the framing)."""
        assert self._connection is not None
        reader = self._connection.reader
        try:
            if self._done:
                return
            if self._head.chunked:
                async for data in http1.read_chunked(reader):
                    yield data
            elif self.content_length is not None:
                left = self.content_length
                while left:
                    data = await reader.read(min(left, _READ_SIZE))
                    if not data:
                        raise asyncio.IncompleteReadError(b"", left)
                    left -= len(data)
                    yield data
            else:
                while True:
                    data = await reader.read(_READ_SIZE)
                    if not data:
                        break
                    yield data
            self._done = True
        except _BROKEN as exc:
            raise UpstreamBroken(_reason(exc)) from None

    def release(self) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        head = self._head
        reusable = (
            self._done
            and not head.close
            and (head.version == b"HTTP/1.1" or head.keep_alive)
            and (head.chunked or head.content_length is not None or self.content_length == 0)
        )
        if reusable:
            self._pool.put(self._origin, connection)
        else:
            connection.close()  # a body left unread, or framed by the close


def request_target(path: str, query: bytes) -> str:
    """The request line's target for a replica path (decoded, as ASGI gives it) and a raw query string."""
    if not _PLAIN_PATH.fullmatch(path):
        path = quote(path, safe=_PATH_SAFE)
    return path + "?" + query.decode("latin-1") if query else path


def _request_head(method: str, target: str, origin: _Origin, headers: bytes, body: Optional[Body], length: Optional[int]) -> bytes:
    if body is None:
        framing = b""
    elif isinstance(body, bytes):
        framing = b"content-length: %d\r\n" % len(body)
    elif length is not None:
        framing = b"content-length: %d\r\n" % length
    else:
        framing = b"transfer-encoding: chunked\r\n"
    return b"".join((method.encode("latin-1"), b" ", target.encode("latin-1"), b" HTTP/1.1\r\n",
                     origin.host_header, headers, framing, _CRLF))


async def _send_stream(writer: asyncio.StreamWriter, body: AsyncIterator[bytes], length: Optional[int]) -> None:
    chunked = length is None
    async for chunk in body:
        if chunked:
            writer.write(b"%x\r\n" % len(chunk) + chunk + _CRLF)
        else:
            writer.write(chunk)
        await writer.drain()  # back-pressure: the client's body moves at the replica's pace
    if chunked:
        writer.write(_LAST_CHUNK)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, asyncio.IncompleteReadError):
        return "the connection closed in the middle of the answer"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
