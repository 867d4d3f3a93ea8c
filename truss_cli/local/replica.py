"""One model server process on this machine, supervised: started, watched until ready, stopped.

The child runs in its own session so that a Ctrl-C reaches only `truss run`, which then
stops the child exactly once (SIGTERM: uvicorn's graceful shutdown, SIGKILL if it hangs).
On Linux the child also gets SIGTERM if `truss run` itself dies, so no orphan keeps the port.

The child's stdout and stderr come through pipes that are copied to ours as the bytes
arrive (logs stay live, progress bars with carriage returns too); the last lines are kept
so that a load failure can be explained in the final error, after the log has scrolled by.
"""

from __future__ import annotations

import collections
import ctypes
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO, Callable, Mapping, Optional, Sequence

from truss_cli import net

_STOP_GRACE_SECONDS = 10.0
# After the child exits, how long its remaining output may take to drain (a grandchild that
# inherited the pipe could hold it open for ever).
_DRAIN_SECONDS = 5.0
_TAIL_LINES = 200  # enough to hold a whole traceback
_TRACEBACK_HEADER = "Traceback (most recent call last):"
_READ_SIZE = 65536
# Output without line breaks (binary, one huge line) is not kept beyond this.
_LONGEST_LINE = 4096
_PR_SET_PDEATHSIG = 1
# Written by the model server as its last log line when load() or the model's import fails.
LOAD_FAILED_MARKER = "load failed:"
# Variables that would make the replica see the CLI's Python instead of its own environment.
_ENVIRONMENT_LEAKS = ("PYTHONHOME", "PYTHONPATH", "VIRTUAL_ENV", "PYTHONSTARTUP", "__PYVENV_LAUNCHER__")


class ReplicaExited(Exception):
    def __init__(self, exit_code: int, cause: Optional[str] = None):
        super().__init__(f"the model server exited with code {exit_code}")
        self.exit_code = exit_code
        self.cause = cause  # the server's own one-line explanation, when it gave one


def replica_environment(bundle_dir: Path, config_variables: Mapping[str, str]) -> dict[str, str]:
    """The user's environment (so TRUSS_SECRET_* reach the model) plus the config's variables.

    The config's `environment_variables` win over the shell's, as they do in the image.
    """
    env = {key: value for key, value in os.environ.items() if key not in _ENVIRONMENT_LEAKS}
    env.update(config_variables)
    env["PYTHONPATH"] = str(bundle_dir)
    env["PYTHONUNBUFFERED"] = "1"  # logs appear as they happen even when piped
    return env


class OutputTail:
    """The last lines seen on any of the child's streams (shared by the copying threads)."""

    def __init__(self, size: int = _TAIL_LINES) -> None:
        self._lines: collections.deque[str] = collections.deque(maxlen=size)
        self._lock = threading.Lock()

    def add(self, line: str) -> None:
        line = line.rstrip()  # indentation is kept: it tells a traceback's frames apart
        if line.strip():
            with self._lock:
                self._lines.append(line)

    def lines(self) -> list[str]:
        with self._lock:
            return list(self._lines)

    def failure_cause(self) -> Optional[str]:
        """One line that explains why the server stopped, or None if it said nothing.

        The server's `load failed:` summary if it wrote one; else the exception line that
        ends the last traceback; else its last line of output.
        """
        lines = self.lines()
        for line in reversed(lines):
            if LOAD_FAILED_MARKER in line:
                # From the marker on: the log line's timestamp and level add nothing here.
                return line[line.index(LOAD_FAILED_MARKER):]
        for start in range(len(lines) - 1, -1, -1):
            if lines[start].startswith(_TRACEBACK_HEADER):
                # Frames are indented; the first unindented line after them is the exception.
                for line in lines[start + 1:]:
                    if not line[0].isspace():
                        return line
                break
        return lines[-1].strip() if lines else None


class Replica:
    def __init__(self, command: Sequence[str], env: Mapping[str, str], url: str, cwd: Optional[Path] = None):
        self.command = list(command)
        self.env = dict(env)
        self.url = url
        self.cwd = cwd
        self.process: Optional[subprocess.Popen[bytes]] = None
        self.tail = OutputTail()
        self._copiers: list[threading.Thread] = []

    def start(self) -> None:
        self.process = subprocess.Popen(
            self.command,
            env=self.env,
            cwd=self.cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            preexec_fn=_parent_death_signal() if sys.platform.startswith("linux") else None,
        )
        for source, destination in ((self.process.stdout, sys.stdout), (self.process.stderr, sys.stderr)):
            assert source is not None
            copier = threading.Thread(target=_copy_output, args=(source, destination, self.tail), daemon=True)
            copier.start()
            self._copiers.append(copier)

    def poll(self) -> Optional[int]:
        assert self.process is not None
        return self.process.poll()

    def wait_until_ready(self) -> None:
        """Block until readiness answers 200; raise ReplicaExited if the process ends first.

        No deadline: `load()` may legitimately take minutes (downloads, large weights).
        """
        try:
            net.wait_until_ready(self.url, is_alive=lambda: self.poll() is None)
        except net.NotReady:
            code = self.wait()
            raise ReplicaExited(code, self.tail.failure_cause()) from None

    def wait(self) -> int:
        """Wait for the process to end and for its last output to be copied."""
        assert self.process is not None
        code = self.process.wait()
        self._drain()
        return code

    def stop(self, grace: float = _STOP_GRACE_SECONDS) -> int:
        """SIGTERM, wait up to `grace` seconds, then SIGKILL. Returns the exit code."""
        if self.process is None:  # interrupted before it started
            return 0
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.process.kill()
        return self.wait()

    def _drain(self) -> None:
        for copier in self._copiers:
            copier.join(_DRAIN_SECONDS)


def _copy_output(source: IO[bytes], destination: IO[str], tail: OutputTail) -> None:
    """Copy `source` to `destination` chunk by chunk, recording complete lines in `tail`."""
    output: Optional[IO[bytes]] = getattr(destination, "buffer", None)
    pending = b""
    fd = source.fileno()
    try:
        while True:
            chunk = os.read(fd, _READ_SIZE)
            if not chunk:
                break
            if output is not None:
                try:
                    destination.flush()  # what rich wrote through the text layer goes first
                    output.write(chunk)
                    output.flush()
                except (OSError, ValueError):
                    # Our own output is gone (a closed pipe): keep reading so the child
                    # never blocks on a full pipe, just stop copying.
                    output = None
            *complete, pending = (pending + chunk).replace(b"\r", b"\n").split(b"\n")
            for line in complete:
                tail.add(line.decode("utf-8", errors="replace"))
            pending = pending[-_LONGEST_LINE:]
    finally:
        tail.add(pending.decode("utf-8", errors="replace"))
        source.close()


def _parent_death_signal() -> Optional[Callable[[], None]]:
    """A pre-exec hook asking Linux to SIGTERM the child when `truss run` dies.

    libc is looked up here, in the parent: the hook runs between fork and exec, where only
    the simplest calls are safe.
    """
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def hook() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the hook ran
            os._exit(1)

    return hook
