"""The watch loop of `truss push --watch`: file-change events in, Deltas out.

`watch_tree(tree)` is a generator: it watches the tree's roots with watchfiles (inotify,
FSEvents, ...), feeds each batch of changed paths to `IncrementalTree.update`, and yields a
`Batch` for each non-empty Delta. Sending the patch, and coalescing batches that arrive while
one is in flight (`Delta.then`), is the caller's business; the generator does not run while
the caller handles a batch, and watchfiles buffers events meanwhile, so nothing is lost.

Timing. watchfiles groups raw events in Rust: it returns a batch once `step` ms pass with no
new event, or after `debounce` ms at most while events keep coming. Its defaults (step 50,
debounce 1600) report a lone save after one to two steps (measured: 100 ms median,
docs/performance.md), twice the whole budget of a hot swap. We use step = 5 ms (~8 ms
measured; 15 ms gave 21-24 ms, a third of a hot swap's save to served): an editor's save
(write temp, fsync, rename; vim's rename/write/fsync/delete; an in-place write) lands within
a few ms, and simulated saves of all three kinds, fsync included, each came as one batch with
the final content at 5 ms as at 15 ms (25 of 25). A save split across two batches costs only a
second update (the tree re-`lstat`s paths at batch time, so a half-written file is corrected
by its next event). The Rust loop wakes every step while idle: ~1.1% of a core idle, against
0.45% at 15 ms (5 s measured).
debounce = 200 ms bounds the wait during a burst (a `git checkout`, a formatter run on many
files): the first part ships within 200 ms and the rest follows, instead of 1.6 s of silence.

Self-healing: the tree is fully rescanned (hashing only files whose identity changed) when
the watcher fails and is restarted (watchfiles raises once per failure and stays failed, so
a fresh watcher is started), and when the machine was suspended (the boot clock ran ahead of
the monotonic clock), since events can be lost in both cases. One loss this cannot see:
watchfiles 1.3 drops notify's path-less "rescan" event, which is how an inotify queue
overflow (more than `fs.inotify.max_queued_events`, 16,384 by default, events between two
reads) is reported; the caller's `full_rescan()` at start and on a 409 covers that case.

No Typer or rich here: the CLI drives this and decides what to print.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import watchfiles

from truss_cli.errors import UsageError
from truss_cli.incremental_tree import IncrementalTree
from truss_cli.sync.manifest import Manifest
from truss_cli.sync.patch import Delta

__all__ = ["DEBOUNCE_MS", "STEP_MS", "Batch", "watch_tree"]

STEP_MS = 5
DEBOUNCE_MS = 200
# How long Rust waits for events before handing control back (to check for a stop, a suspend).
_IDLE_MS = 1000
# Boot clock ahead of the monotonic clock by more than this since the last look = a suspend.
_SUSPEND_NS = 2_000_000_000
# A watcher that keeps failing right after a restart is not going to recover by itself.
_MAX_RESTARTS = 3

logger = logging.getLogger(__name__)


class StopEvent(Protocol):
    def is_set(self) -> bool: ...


@dataclass(frozen=True)
class Batch:
    """One step of the tree: what changed, and where it now stands."""

    delta: Delta  # empty only for an idle batch (`yield_idle=True`)
    manifest: Manifest  # the tree after the delta
    paths: int  # distinct paths the watcher reported in this batch
    received: float  # time.monotonic() when the watcher handed the batch over
    compute_ms: float  # time spent turning the paths into the delta and the new tree hash
    rescanned: bool = False  # a full rescan (start-up healing, watcher restart, resume from sleep)
    # The tree refused what it found (a link to outside the tree): the delta is empty, the
    # watch goes on, and the next batch rescans fully once the user has fixed it.
    error: UsageError | None = None

    @property
    def tree_hash(self) -> str:
        return self.manifest.tree_hash()


def watch_tree(
    tree: IncrementalTree,
    *,
    stop_event: StopEvent | None = None,
    step_ms: int = STEP_MS,
    debounce_ms: int = DEBOUNCE_MS,
    yield_idle: bool = False,
    force_polling: bool | None = None,
) -> Iterator[Batch]:
    """Yield a Batch for every change of `tree` until `stop_event` is set.

    With `yield_idle`, an empty Batch also comes about once a second without changes, so a
    caller can do periodic work (a keep-awake call) on the same thread. Raises UsageError when
    the model directory itself disappears, and the watcher's own error when it keeps failing.
    """
    root = tree.roots[0]
    restarts = 0
    clocks = _Clocks()
    while True:
        try:
            for raw in watchfiles.watch(
                *tree.roots,
                watch_filter=lambda _change, path: tree.wants(path),
                step=step_ms,
                debounce=debounce_ms,
                rust_timeout=_IDLE_MS,
                yield_on_timeout=True,
                stop_event=stop_event,
                force_polling=force_polling,
                raise_interrupt=True,
            ):
                received = time.monotonic()
                if clocks.suspended():
                    try:
                        batch = _rescan(tree, received)
                    except UsageError as exc:
                        batch = Batch(Delta(), tree.manifest, 0, received, 0.0, rescanned=True, error=exc)
                elif raw:
                    start = time.perf_counter()
                    paths = {path for _change, path in raw}
                    try:
                        delta, error = tree.update(paths), None
                    except UsageError as exc:
                        delta, error = Delta(), exc
                    elapsed = (time.perf_counter() - start) * 1000
                    batch = Batch(delta, tree.manifest, len(paths), received, elapsed, error=error)
                    restarts = 0
                else:
                    batch = Batch(Delta(), tree.manifest, 0, received, 0.0)
                if not root.is_dir():
                    raise UsageError(f"{root}: the model directory is gone; stopped watching")
                if batch.delta or batch.error or yield_idle:
                    yield batch
            return  # the stop event was set
        except (RuntimeError, OSError) as exc:
            # watchfiles' Rust side failed (a queue overflow, a watched directory replaced,
            # too many watches...). Events may be lost: start again and rescan once.
            restarts += 1
            if restarts > _MAX_RESTARTS or not root.is_dir():
                raise
            logger.warning("file watcher failed (%s); restarting it and rescanning %s", exc, root)
            try:
                batch = _rescan(tree, time.monotonic())
            except UsageError as error:
                batch = Batch(Delta(), tree.manifest, 0, time.monotonic(), 0.0, rescanned=True, error=error)
            if batch.delta or batch.error or yield_idle:
                yield batch


def _rescan(tree: IncrementalTree, received: float) -> Batch:
    start = time.perf_counter()
    delta = tree.full_rescan()
    return Batch(delta, tree.manifest, 0, received, (time.perf_counter() - start) * 1000, rescanned=True)


class _Clocks:
    """Notices a suspend: CLOCK_BOOTTIME counts the time asleep, CLOCK_MONOTONIC does not."""

    def __init__(self) -> None:
        self._boot = getattr(time, "CLOCK_BOOTTIME", None)
        self._gap = self._read()

    def _read(self) -> int:
        if self._boot is None:
            return 0
        return time.clock_gettime_ns(self._boot) - time.monotonic_ns()

    def suspended(self) -> bool:
        gap = self._read()
        slept = gap - self._gap > _SUSPEND_NS
        self._gap = gap
        return slept
