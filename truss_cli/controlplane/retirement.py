"""Stopping replicas gracefully, off the reconciler's tick: a graceful stop takes up to
STOP_GRACE_SECONDS, and the ticks of other deployments must not wait for it.

Two ways in, one way of stopping (SIGTERM: each server drains its in-flight requests):
- Retiring rows (a scale-down, leftovers of a deployment that runs nothing now, a rebuild's
  old replica): from the tick that queues them on, no tick counts them as their deployment's
  or routes to them (`retiring`). They wait for the publish of that tick (so the gateway no
  longer routes to them), then a worker thread waits (bounded) for the gateway's requests at
  them to finish, stops them and marks them stopped.
- Deactivating a deployment (desired inactive): a thread per deployment stops every replica,
  keeps their rows for the logs, then marks it INACTIVE (DEACTIVATING -> INACTIVE). A crash
  in the middle leaves it DEACTIVATING, and the next tick starts this again.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Optional

from truss_cli.controlplane.builds import build_log_path
from truss_cli.controlplane.runtimes.base import Handle, Runtime
from truss_cli.controlplane.runtimes.logfile import LogFile
from truss_cli.controlplane.store import NotFound, Replica, Store

logger = logging.getLogger("truss.controlplane.reconciler")  # the reconciler's stops: its log, as before

STOPPED = "stopped"  # a replica row kept for its logs (its deployment failed or was deactivated)
# How long a retiring replica's requests in flight at the gateway may take to finish before
# it is stopped anyway (its server then drains them for protocol.DRAIN_SECONDS more).
RETIRE_DRAIN_SECONDS = 30.0


class Retirement:
    def __init__(self, store: Store, runtime: Runtime, in_flight_at: Optional[Callable[[str], int]],
                 stopped: Callable[[str], None], done: Callable[[], None]) -> None:
        """`in_flight_at(url)`: the gateway's requests outstanding at a replica (None: do not
        wait); `stopped(row_id)`: a row was stopped here (the reconciler forgets its restart);
        `done()`: a worker thread finished (the reconciler ticks again)."""
        self.store = store
        self.runtime = runtime
        self._in_flight_at = in_flight_at
        self._stopped = stopped
        self._done = done
        self._lock = threading.Lock()
        # Replica rows being retired, and those waiting for a publish: (seq of the tick that queued it, row).
        self.retiring: set[str] = set()
        self._queue: list[tuple[int, Replica]] = []
        # Deployments whose replicas a worker thread is stopping now.
        self._deactivating: set[str] = set()

    # -- retiring rows ----------------------------------------------------------------------

    def queue(self, seq: int, rows: list[Replica]) -> None:
        """The tick's thread: from now on `rows` are no replicas of their deployment."""
        with self._lock:
            rows = [r for r in rows if r.id not in self.retiring]
            self.retiring.update(r.id for r in rows)
            self._queue += [(seq, r) for r in rows]

    def begin(self, published: int) -> None:
        """After a publish: stop the rows queued by the published tick or an older one in a
        worker thread (graceful: in-flight requests finish), then mark them stopped."""
        with self._lock:
            rows = [r for seq, r in self._queue if seq <= published]
            self._queue = [(seq, r) for seq, r in self._queue if seq > published]
        if rows:
            threading.Thread(target=self._retire, args=(rows,), name="retire-replicas", daemon=True).start()

    def _retire(self, rows: list[Replica]) -> None:
        try:
            for row in rows:  # listings count it no more
                with contextlib.suppress(NotFound):
                    self.store.replicas.set_phase(row.id, "stopping")
            self._wait_for_in_flight(rows)
            self._stop_and_mark(rows)
        except Exception:
            logger.exception("stopping replicas %s failed; the next tick tries again", [r.id for r in rows])
        finally:
            with self._lock:
                self.retiring.difference_update(r.id for r in rows)
            self._done()

    def _stop_and_mark(self, rows: list[Replica]) -> None:
        """Stop the replicas (each server drains) and mark their rows STOPPED, kept for the logs."""
        self.stop_replicas(rows)
        for row in rows:
            self._stopped(row.id)
            with contextlib.suppress(NotFound):  # deleted meanwhile
                self.store.replicas.set_phase(row.id, STOPPED)

    def _wait_for_in_flight(self, rows: list[Replica]) -> None:
        """Unrouted already: wait (bounded) until the gateway has no request at these replicas,
        so none is cut off by the stop (a stream that outlasts the bound is drained by the server)."""
        if self._in_flight_at is None:
            return
        urls = [str(row.handle.get("url") or "") for row in rows]
        deadline = time.monotonic() + RETIRE_DRAIN_SECONDS
        while any(url and self._in_flight_at(url) for url in urls) and time.monotonic() < deadline:
            time.sleep(0.05)

    # -- deactivating a deployment (a thread per deployment) -------------------------------

    def deactivate(self, deployment_id: str) -> None:
        """Begin stopping the deployment's replicas, unless a thread does so already."""
        with self._lock:
            if deployment_id in self._deactivating:
                return
            self._deactivating.add(deployment_id)
        threading.Thread(target=self._deactivate, args=(deployment_id,), name=f"deactivate-{deployment_id}",
                         daemon=True).start()

    def _deactivate(self, deployment_id: str) -> None:
        """Stop every replica of the deployment gracefully (each server drains its in-flight
        requests), keep their rows for the logs, then mark the deployment INACTIVE."""
        try:
            rows = [r for r in self.store.replicas.list(deployment_id) if r.phase != STOPPED]
            self._stop_and_mark(rows)
            if self.store.deployments.finish_deactivation(deployment_id):
                with LogFile(build_log_path(self.store, deployment_id)) as log:
                    log(f"deactivated: {len(rows)} replica(s) stopped")
        except Exception:
            logger.exception("deactivating deployment %s failed; the next tick tries again", deployment_id)
        finally:
            with self._lock:
                self._deactivating.discard(deployment_id)
            self._done()

    # -- stopping ---------------------------------------------------------------------------

    def stop_replicas(self, rows: Iterable[Replica]) -> None:
        """Stop replicas with the runtime's default grace (SIGTERM: in-flight requests finish),
        all at once, so the whole stop takes one grace period at most."""
        threads = [
            threading.Thread(target=self._stop_quietly, args=(Handle.from_dict(dict(row.handle)),), daemon=True)
            for row in rows
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def _stop_quietly(self, handle: Handle) -> None:
        try:
            self.runtime.stop(handle)
        except Exception:
            logger.exception("stopping replica %s failed", handle.replica_id)
