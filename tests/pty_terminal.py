"""A truss command on a pseudo-terminal, as in a user's shell: what rich draws there (live
views, status lines) is only drawn on a terminal. `screen` is what was drawn so far, without
the control sequences."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Mapping, Optional


class PtyCommand:
    """`python -m truss_cli ARGS` with stdout (and stderr unless `stderr_to_pipe`) on a pty."""

    def __init__(self, args: tuple[str, ...], env: Mapping[str, str], columns: int = 120,
                 stderr_to_pipe: bool = False, cwd: Optional[Path] = None) -> None:
        leader, follower = pty.openpty()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "truss_cli", *args], cwd=cwd, stdin=follower, stdout=follower,
            stderr=subprocess.PIPE if stderr_to_pipe else follower, text=True,
            env={**os.environ, **env, "COLUMNS": str(columns), "TERM": "xterm"})
        os.close(follower)
        self._leader = leader
        self._chunks: list[bytes] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self._leader, 65536)
            except OSError:  # EIO: the process closed the terminal
                return
            if not chunk:
                return
            self._chunks.append(chunk)

    @property
    def screen(self) -> str:
        """What was drawn, without the control sequences (colours, cursor moves)."""
        return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", b"".join(self._chunks).decode("utf-8", "replace"))

    def wait_for(self, pattern: str, start: int = 0, timeout: float = 60) -> re.Match[str]:
        """The first match of `pattern` in what was drawn from `start` on, once it is drawn."""
        deadline = time.monotonic() + timeout
        while (found := re.compile(pattern).search(self.screen, start)) is None:
            assert self.process.poll() is None and time.monotonic() < deadline, self.screen[-3000:]
            time.sleep(0.05)
        return found

    def wait_for_text(self, text: str, timeout: float = 120) -> None:
        self.wait_for(re.escape(text), timeout=timeout)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        os.close(self._leader)
