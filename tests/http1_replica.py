"""A replica that speaks HTTP/1.1 by hand (no tests of its own), for what a model server never
does: 204 and 304 answers, a body ended by closing, hop-by-hop headers, a keep-alive
connection dropped as a request arrives. A real server on a real socket, in a thread; it
parses on its own (not with the gateway's http1 module), so a framing mistake there cannot
hide behind the same mistake here.

Paths:
    /echo[/...]      200, JSON of what arrived: method, target, headers, body length and text
    /chunked         200, chunked: "one ", "two ", "three" and a trailer
    /no-content      204
    /not-modified    304 with a Content-Length and no body
    /until-close     200 without a length; the body ends when the connection closes
    /hop             200 with hop-by-hop headers the client must not see
    /big?n=N         200 with N bytes of "x" and a Content-Length
A HEAD is answered like a GET, without the body. `drop_reused`: a request that arrives on a
connection that already carried one is met by closing the connection, unanswered (a
keep-alive timeout firing just as the request came). `close_after_answer`: every connection
is closed right after its first answer, which does not say so (a keep-alive timeout firing
while the connection sits idle).
"""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Optional

from test_server_harness import wait_for


class Http1Replica:
    def __init__(self, drop_reused: bool = False, close_after_answer: bool = False) -> None:
        self.drop_reused = drop_reused
        self.close_after_answer = close_after_answer
        self.connections = 0
        self.requests: list[dict] = []
        self.dropped = 0
        self.loop: Optional[asyncio.AbstractEventLoop] = None
        self.server: Optional[asyncio.base_events.Server] = None
        self._stop: Optional[asyncio.Event] = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        wait_for(lambda: self.server is not None, "the raw replica to listen")
        self.port = self.server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"

    def _run(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.loop.run_until_complete(self._serve())

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        self.server = await asyncio.start_server(self._connection, "127.0.0.1", 0)
        await self._stop.wait()
        self.server.close()

    def stop_listening(self) -> None:
        """Close the listening socket: new connections are refused (a replica that died)."""
        assert self.loop is not None and self.server is not None
        self.loop.call_soon_threadsafe(self.server.close)
        wait_for(lambda: not self.server.is_serving(), "the raw replica to stop listening")

    def close(self) -> None:
        if self.loop is not None and self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)
        self.thread.join(5)

    def __enter__(self) -> "Http1Replica":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        served = 0
        try:
            while True:
                try:
                    raw = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    return
                if served and self.drop_reused:
                    self.dropped += 1
                    return
                lines = raw[:-4].decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                headers = [(n.strip().lower(), v.strip()) for n, _, v in (line.partition(":") for line in lines[1:])]
                body = await _read_body(reader, dict(headers))
                self.requests.append({"method": method, "target": target, "headers": headers, "body": body})
                served += 1
                if not await self._answer(writer, method, target, headers, body) or self.close_after_answer:
                    return
        finally:
            writer.close()

    async def _answer(self, writer: asyncio.StreamWriter, method: str, target: str, headers: list, body: bytes) -> bool:
        """Writes the answer; whether the connection stays open."""
        path, _, query = target.partition("?")
        head_only = method == "HEAD"
        if path.startswith("/echo"):
            payload = json.dumps({"method": method, "target": target, "headers": headers,
                                  "length": len(body), "body": body.decode("latin-1")}).encode()
            writer.write(_head(200, [("content-type", "application/json"), ("content-length", str(len(payload)))]))
            if not head_only:
                writer.write(payload)
        elif path == "/chunked":
            writer.write(_head(200, [("transfer-encoding", "chunked"), ("trailer", "x-done")]))
            for piece in (b"one ", b"two ", b"three"):
                writer.write(b"%x;ext=1\r\n%s\r\n" % (len(piece), piece))
                await writer.drain()
            writer.write(b"0\r\nx-done: yes\r\n\r\n")
        elif path == "/no-content":
            writer.write(_head(204, []))
        elif path == "/not-modified":
            writer.write(_head(304, [("content-length", "10"), ("etag", '"v1"')]))
        elif path == "/until-close":
            writer.write(_head(200, [("content-type", "text/plain")]) + b"everything until the end")
            await writer.drain()
            return False
        elif path == "/hop":
            writer.write(_head(200, [("connection", "x-hop-secret"), ("x-hop-secret", "1"), ("keep-alive", "timeout=5"),
                                     ("x-kept", "yes"), ("content-length", "2")]) + b"ok")
        elif path == "/big":
            size = int(query.partition("=")[2])
            writer.write(_head(200, [("content-length", str(size))]) + b"x" * size)
        else:
            writer.write(_head(404, [("content-length", "0")]))
        await writer.drain()
        return True


async def _read_body(reader: asyncio.StreamReader, headers: dict) -> bytes:
    if "content-length" in headers:
        return await reader.readexactly(int(headers["content-length"]))
    if headers.get("transfer-encoding", "").lower() == "chunked":
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                while await reader.readuntil(b"\r\n") != b"\r\n":
                    pass
                return b"".join(parts)
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)
    return b""


def _head(status: int, headers: list) -> bytes:
    reasons = {200: "OK", 204: "No Content", 304: "Not Modified", 404: "Not Found"}
    lines = [f"HTTP/1.1 {status} {reasons[status]}"] + [f"{name}: {value}" for name, value in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
