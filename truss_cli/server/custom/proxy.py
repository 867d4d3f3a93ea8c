"""The replica's front: accepts client connections and passes each request to the custom
server (through `RouteMap`), streaming bodies both ways, keeping both sides' connections
alive between requests.

Our own answers are few: the replica status, 503 before the custom server is ready, 502 when
it does not answer, 413 for a body over TRUSS_MAX_REQUEST_BYTES (the model server's limit and
body; the custom server never sees such a request whole). Its own answers, errors included,
pass through untouched except for the replica id header.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Callable, List, Optional, Set, Tuple

from truss_cli.server import protocol
from truss_cli.server.custom import http1
from truss_cli.server.custom.http1 import BadMessage, BodyTooLarge, Head
from truss_cli.server.custom.routes import RouteMap
from truss_cli.server.request_body import too_large
from truss_cli.server.status import ReplicaStatus

logger = logging.getLogger("truss.custom_server")

UPSTREAM_HOST = "127.0.0.1"
_STATUS_TARGET = protocol.STATUS_PATH.encode()
# Idle connections kept open to the custom server, reused by the next requests.
_MAX_IDLE_UPSTREAM = 64
_Connection = Tuple[asyncio.StreamReader, asyncio.StreamWriter]


class UpstreamDown(Exception):
    """The custom server could not be reached, or closed the connection before answering."""


class Proxy:
    def __init__(
        self,
        routes: RouteMap,
        server_port: int,
        replica_id: Optional[str],
        current_status: Callable[[], ReplicaStatus],
        max_request_bytes: int = protocol.DEFAULT_MAX_REQUEST_BYTES,
    ) -> None:
        self.routes = routes
        self.max_request_bytes = max_request_bytes
        self.server_port = server_port
        self.current_status = current_status
        self._replica_header: List[bytes] = [f"{protocol.REPLICA_ID_HEADER}: {replica_id}".encode()] if replica_id else []
        self.ready = False  # set once the custom server answered its readiness endpoint
        self.refusal: Optional[str] = None  # why requests get 503 (None: pass them on)
        self._idle: List[_Connection] = []
        self.in_flight = 0
        self._idle_clients: Set[asyncio.StreamWriter] = set()
        self.draining = False
        self._drained = asyncio.Event()

    # ------------------------------------------------------------------ clients

    async def handle_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while not self.draining:
                self._idle_clients.add(writer)
                try:
                    head = await http1.read_head(reader)
                finally:
                    self._idle_clients.discard(writer)
                if head is None:
                    break
                self.in_flight += 1
                try:
                    keep_alive = await self._answer(head, reader, writer)
                finally:
                    self.in_flight -= 1
                    if self.draining and self.in_flight == 0:
                        self._drained.set()
                if not keep_alive:
                    break
        except BadMessage as exc:
            self._send_error(writer, 400, "Bad Request", f"cannot pass this request on: {exc}")
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away
        finally:
            writer.close()

    async def _answer(self, head: Head, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Answer one request; whether the client connection can take another."""
        target = head.first[1]
        if target == _STATUS_TARGET:
            await http1.discard_body(head, reader)
            writer.write(self._status_response())
            return _client_keeps_alive(head)
        if not self.ready or self.refusal is not None:
            reason = self.refusal or "the custom server is not ready yet"
            writer.write(self._error_bytes(503, "Service Unavailable", reason, close=True))
            return False
        if not head.chunked and (head.content_length or 0) > self.max_request_bytes:
            return await self._refuse_too_large(head, reader, writer)
        upstream_head = head.with_target(self.routes.upstream_target(target), drop_expect=head.expect_continue)
        if head.expect_continue:
            # Answered here: the body is read before the custom server's answer is.
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        if head.upgrade:
            return await self._tunnel(upstream_head, reader, writer)
        small, length = http1.head_and_small_body(head)
        try:
            if small:
                body = await reader.readexactly(length) if length else b""
                return await self._exchange(head, upstream_head + body, None, writer)
            return await self._exchange(head, upstream_head, reader, writer)
        except UpstreamDown as exc:
            writer.write(self._error_bytes(502, "Bad Gateway", f"the custom server is not answering on port {self.server_port}: {exc}"))
            return _client_keeps_alive(head) and small

    async def _refuse_too_large(self, head: Head, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """413 for a body whose length is over the limit, before any of it is read."""
        if head.expect_continue:
            # The client waits for our word before sending the body: it never comes.
            writer.write(self._too_large_bytes(close=True))
            return False
        keep_alive = _client_keeps_alive(head)
        writer.write(self._too_large_bytes(close=not keep_alive))
        # Read and dropped, not left unread: closing on unread bytes resets the connection,
        # and the client may lose the 413 with it.
        await http1.discard_body(head, reader)
        return keep_alive

    # ------------------------------------------------------------------ upstream

    async def _exchange(
        self, head: Head, request: bytes, body_reader: Optional[asyncio.StreamReader], writer: asyncio.StreamWriter
    ) -> bool:
        """Send the request (its body still to stream from `body_reader`, or already in
        `request`), pass the response on; whether the client connection stays open."""
        # A pooled connection may have been closed by the server while idle; a request held
        # whole in memory can then be sent again on a new connection.
        for attempt in (0, 1):
            upstream, reused = await self._acquire(fresh=attempt == 1)
            up_reader, up_writer = upstream
            try:
                up_writer.write(request)
                if body_reader is not None:
                    await http1.copy_body(head, body_reader, up_writer, limit=self.max_request_bytes)
                response = await http1.read_head(up_reader)
                while response is not None and 100 <= response.status < 200 and response.status != 101:
                    response = await http1.read_head(up_reader)  # interim answers: ours was sent
                if response is None:
                    raise ConnectionResetError("closed the connection without answering")
            except BodyTooLarge as exc:
                # Part of the body went on already: the custom server loses the connection
                # (an aborted request), the client gets the 413 once the rest is read.
                up_writer.close()
                keep_alive = _client_keeps_alive(head)
                writer.write(self._too_large_bytes(close=not keep_alive))
                await http1.discard_chunked_rest(exc.rest, body_reader)
                return keep_alive
            except (ConnectionError, OSError, asyncio.IncompleteReadError) as exc:
                up_writer.close()
                if reused and body_reader is None and attempt == 0:
                    continue
                raise UpstreamDown(_reason(exc)) from None
            break
        writer.write(response.with_header(self._replica_header[0]) if self._replica_header else response.raw)
        method = head.first[0]
        no_body = method == b"HEAD" or response.status in (204, 304)
        until_close = not no_body and not response.chunked and response.content_length is None
        try:
            if not no_body:
                await http1.copy_body(response, up_reader, writer, until_close=until_close)
            else:
                await writer.drain()
        except (ConnectionError, OSError, asyncio.IncompleteReadError, BadMessage):
            # Half a response was sent: the only honest thing left is to cut the client off.
            up_writer.close()
            return False
        if response.close or until_close or head.close:
            up_writer.close()
        else:
            self._release(upstream)
        return _client_keeps_alive(head) and not response.close and not until_close

    async def _acquire(self, fresh: bool) -> Tuple[_Connection, bool]:
        while self._idle and not fresh:
            connection = self._idle.pop()
            if not connection[0].at_eof() and not connection[1].is_closing():
                return connection, True
            connection[1].close()
        try:
            return await asyncio.open_connection(UPSTREAM_HOST, self.server_port), False
        except OSError as exc:
            raise UpstreamDown(_reason(exc)) from None

    def _release(self, connection: _Connection) -> None:
        if len(self._idle) < _MAX_IDLE_UPSTREAM and not self.draining:
            self._idle.append(connection)
        else:
            connection[1].close()

    async def _tunnel(self, request: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """An upgrade (a websocket): pass the handshake, then bytes both ways until one side closes."""
        try:
            (up_reader, up_writer), _ = await self._acquire(fresh=True)
            up_writer.write(request)
            response = await http1.read_head(up_reader)
            if response is None:
                raise ConnectionResetError("closed the connection without answering")
        except UpstreamDown as exc:
            message = f"the custom server is not answering on port {self.server_port}: {exc}"
            writer.write(self._error_bytes(502, "Bad Gateway", message, close=True))
            return False
        except (ConnectionError, OSError, asyncio.IncompleteReadError) as exc:
            message = f"the custom server is not answering on port {self.server_port}: {_reason(exc)}"
            writer.write(self._error_bytes(502, "Bad Gateway", message, close=True))
            return False
        writer.write(response.with_header(self._replica_header[0]) if self._replica_header else response.raw)
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            up_writer.close()
        return False

    # ------------------------------------------------------------------ our own answers

    def _status_response(self) -> bytes:
        status = self.current_status()
        payload = status.to_json().encode()
        lines = [b"HTTP/1.1 200 OK", b"content-type: application/json", b"content-length: " + str(len(payload)).encode()]
        return http1.CRLF.join(lines + self._replica_header) + http1.HEAD_END + payload

    def _too_large_bytes(self, close: bool) -> bytes:
        return self._error_bytes(413, "Content Too Large", too_large(self.max_request_bytes).message, close=close)

    def _error_bytes(self, status: int, reason: str, message: str, close: bool = False) -> bytes:
        return http1.json_response(status, reason, {"error": message}, self._replica_header, close=close)

    def _send_error(self, writer: asyncio.StreamWriter, status: int, reason: str, message: str) -> None:
        try:
            writer.write(self._error_bytes(status, reason, message, close=True))
        except (ConnectionError, RuntimeError):
            pass

    # ------------------------------------------------------------------ shutdown

    async def drain(self, seconds: float) -> bool:
        """Stop taking requests; wait up to `seconds` for those in flight. Whether all finished."""
        self.draining = True
        for writer in list(self._idle_clients):
            writer.close()  # idle keep-alive connections: nothing to wait for
        for _, writer in self._idle:
            writer.close()
        self._idle.clear()
        if self.in_flight == 0:
            return True
        try:
            await asyncio.wait_for(self._drained.wait(), seconds)
            return True
        except asyncio.TimeoutError:
            return False


async def _pipe(source: asyncio.StreamReader, destination: asyncio.StreamWriter) -> None:
    try:
        while True:
            data = await source.read(65536)
            if not data:
                break
            destination.write(data)
            await destination.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        if destination.can_write_eof() and not destination.is_closing():
            try:
                destination.write_eof()
            except (OSError, RuntimeError):
                pass


def _client_keeps_alive(head: Head) -> bool:
    if head.close:
        return False
    return head.version == b"HTTP/1.1" or head.keep_alive


def _reason(exc: BaseException) -> str:
    if isinstance(exc, asyncio.IncompleteReadError):
        return "the connection closed in the middle of the answer"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
