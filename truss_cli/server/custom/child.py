"""The custom server's process: `sh -c START_COMMAND` in its own process group, its output
copied to ours line by line as it comes (so it reaches the supervisor's log), the last lines
kept to explain an exit.

Its own process group, because a start command is often a shell line or a launcher that
starts the real server as a child: stopping the group stops all of them.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections import deque
from typing import Deque, Mapping, Optional

# Lines kept to explain an exit (the summary names the last one, the status holds them all).
TAIL_LINES = 20
_READ_SIZE = 65536


class CustomServerProcess:
    def __init__(self, command: str, environ: Mapping[str, str]) -> None:
        self.command = command
        self.environ = dict(environ)
        self.process: Optional[asyncio.subprocess.Process] = None
        self._tail: Deque[str] = deque(maxlen=TAIL_LINES)
        self._copier: Optional["asyncio.Task[None]"] = None

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            "/bin/sh", "-c", self.command,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=self.environ,
            start_new_session=True,
        )
        self._copier = asyncio.ensure_future(self._copy_output())

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    async def wait(self) -> int:
        """Its exit code (negative: the signal that ended it), once its output is copied too."""
        assert self.process is not None
        code = await self.process.wait()
        if self._copier is not None:
            # A grandchild that inherited the pipe could keep it open for ever.
            try:
                await asyncio.wait_for(asyncio.shield(self._copier), 2.0)
            except asyncio.TimeoutError:
                pass
        return code

    def last_lines(self) -> list:
        return list(self._tail)

    async def stop(self, grace: float) -> Optional[int]:
        """SIGTERM to its process group; SIGKILL after `grace` seconds. Its exit code."""
        if self.process is None:
            return None
        if self.process.returncode is None:
            self._signal_group(signal.SIGTERM)
            try:
                return await asyncio.wait_for(self.wait(), grace)
            except asyncio.TimeoutError:
                pass
        self._signal_group(signal.SIGKILL)  # also what is left of the group after the leader exited
        return await self.wait()

    def _signal_group(self, signum: int) -> None:
        try:
            os.killpg(self.pid, signum)
        except (ProcessLookupError, PermissionError):
            pass

    async def _copy_output(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        out = sys.stdout.buffer
        partial = b""
        while True:
            data = await self.process.stdout.read(_READ_SIZE)
            if not data:
                break
            try:
                out.write(data)
                out.flush()
            except (OSError, ValueError):
                pass  # our stdout is gone: keep reading so the server never blocks on a full pipe
            lines = (partial + data).split(b"\n")
            partial = lines.pop()[-4096:]
            self._remember(lines)
        if partial:
            self._remember([partial])

    def _remember(self, lines: list) -> None:
        for line in lines:
            text = line.decode("utf-8", "replace").rstrip("\r").strip()
            if text:
                # A progress bar rewrites its line with \r: keep what it said last.
                self._tail.append(text.rsplit("\r", 1)[-1].strip() or text)


def exit_description(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"
