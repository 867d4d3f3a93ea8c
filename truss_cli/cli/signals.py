"""Signals for commands that supervise something (a replica process, a container).

A supervisor's SIGTERM must clean up exactly like Ctrl-C does, and Ctrl-C must work even
when a parent shell started us with SIGINT ignored (a background job, nohup). Cleanup
itself must not be cut short by a second signal, or the child is left behind.
"""

from __future__ import annotations

import signal
from contextlib import contextmanager
from typing import Any, Iterator


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


@contextmanager
def _handlers(on_interrupt: Any, on_terminate: Any) -> Iterator[None]:
    # The previous handlers come back afterwards: commands also run inside test processes.
    previous = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGINT, on_interrupt)
    signal.signal(signal.SIGTERM, on_terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous[0])
        signal.signal(signal.SIGTERM, previous[1])


def interruptible() -> Any:
    """Within: SIGINT and SIGTERM both raise KeyboardInterrupt."""
    return _handlers(signal.default_int_handler, _raise_interrupt)


def uninterruptible() -> Any:
    """Within: SIGINT and SIGTERM are ignored (for the cleanup that must finish)."""
    return _handlers(signal.SIG_IGN, signal.SIG_IGN)
