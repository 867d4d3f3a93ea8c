"""The supervisor's side of its workers: one handle per generation, over the Unix socket
each worker opens after the fork (messages.py)."""

from __future__ import annotations

import asyncio
from typing import Optional

from truss_cli.server.control import messages


class WorkerGone(Exception):
    """A generation that never started or left before it could serve."""


class WorkerHandle:
    """The supervisor's end of one worker's message socket."""

    def __init__(self, generation: int, pid: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.generation = generation
        self.pid = pid
        self.writer = writer
        self.events: asyncio.Queue = asyncio.Queue()
        self.gone = asyncio.get_running_loop().create_future()
        self._reading = asyncio.ensure_future(self._read(reader))

    async def _read(self, reader: asyncio.StreamReader) -> None:
        while True:
            message = await messages.receive(reader)
            if message is None:
                self.events.put_nowait({"event": "exited"})
                if not self.gone.done():
                    self.gone.set_result(None)
                return
            self.events.put_nowait(message)

    def send(self, message: dict) -> None:
        try:
            self.writer.write(messages.encode(message))
        except (ConnectionError, RuntimeError):
            pass

    async def next(self, *events: str, timeout: Optional[float] = None) -> dict:
        """The next message among `events`, or `{"event": "exited"}` when the worker is gone."""
        async def wait() -> dict:
            while True:
                message = await self.events.get()
                if message.get("event") in events or message.get("event") == "exited":
                    return message
        return await asyncio.wait_for(wait(), timeout)


class WorkerRegistry:
    """Matches the worker that connects and says `hello {generation}` to the fork that
    expects it."""

    def __init__(self) -> None:
        self._expected: dict = {}

    def expect(self, generation: int) -> asyncio.Future:
        future = asyncio.get_running_loop().create_future()
        self._expected[generation] = future
        return future

    def forget(self, generation: int) -> None:
        self._expected.pop(generation, None)

    async def connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        hello = await messages.receive(reader)
        if not hello or hello.get("event") != "hello":
            writer.close()
            return
        future = self._expected.pop(hello.get("generation"), None)
        if future is None or future.done():
            writer.close()
            return
        future.set_result(WorkerHandle(hello["generation"], hello.get("pid", 0), reader, writer))
