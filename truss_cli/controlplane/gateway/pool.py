"""Idle keep-alive connections to replicas, kept per replica origin (`http://host:port`).

A predict that finds an idle connection pays no TCP handshake. The most recently used
connection is taken first (the others age out). A connection is kept idle at most
IDLE_SECONDS, under the replica's own keep-alive timeout (uvicorn's default is 5 s), so the
gateway seldom sends on a connection the replica is closing; when it does anyway, the
upstream client retries on a new connection (upstream.py). Everything here runs on the
event loop thread, so no lock.
"""

from __future__ import annotations

import asyncio
import select
import time
from typing import Optional

IDLE_SECONDS = 4.0
MAX_IDLE_PER_ORIGIN = 64


class Connection:
    __slots__ = ("reader", "writer", "idle_since", "_poll")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, tls: bool = False) -> None:
        self.reader = reader
        self.writer = writer
        self.idle_since = 0.0
        # Over TLS the socket may hold records that are no answer (session tickets): no probe.
        self._poll: Optional[select.poll] = None if tls else select.poll()
        if self._poll is not None:
            self._poll.register(writer.get_extra_info("socket").fileno(), select.POLLIN)

    def usable(self, now: float) -> bool:
        """Whether an idle connection can take a request: not aged out, not closed by the replica."""
        if now - self.idle_since >= IDLE_SECONDS or self.reader.at_eof() or self.writer.is_closing():
            return False
        # at_eof knows of a close the event loop has seen. One that came in since (a replica
        # that just died) shows as a readable socket: an idle connection has nothing to read
        # but an end. One poll(2), no wait: ~0.5 µs.
        return self._poll is None or not self._poll.poll(0)

    def close(self) -> None:
        self.writer.close()


class ConnectionPool:
    def __init__(self) -> None:
        self._idle: dict[str, list[Connection]] = {}
        self._swept = time.monotonic()

    def take(self, origin: str) -> Optional[Connection]:
        idle = self._idle.get(origin)
        if not idle:
            return None
        now = time.monotonic()
        while idle:
            connection = idle.pop()
            if connection.usable(now):
                return connection
            connection.close()
        return None

    def put(self, origin: str, connection: Connection) -> None:
        now = time.monotonic()
        connection.idle_since = now
        idle = self._idle.get(origin)
        if idle is None:
            idle = self._idle[origin] = []
        if len(idle) < MAX_IDLE_PER_ORIGIN:
            idle.append(connection)
        else:
            connection.close()
        if now - self._swept > IDLE_SECONDS:
            self._sweep(now)

    def _sweep(self, now: float) -> None:
        # Replicas come and go: close what aged out, also for origins no request goes to any more.
        self._swept = now
        for origin in list(self._idle):
            kept = []
            for connection in self._idle[origin]:
                if connection.usable(now):
                    kept.append(connection)
                else:
                    connection.close()
            if kept:
                self._idle[origin] = kept
            else:
                del self._idle[origin]

    def drop(self, origin: str) -> None:
        """Close the idle connections to `origin` (a development replica switched its code:
        a connection opened before would be answered by the old code once more)."""
        for connection in self._idle.pop(origin, []):
            connection.close()

    def close_all(self) -> None:
        for idle in self._idle.values():
            for connection in idle:
                connection.close()
        self._idle.clear()
