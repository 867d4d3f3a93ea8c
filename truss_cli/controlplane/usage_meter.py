"""Usage, counted in memory and flushed to the store: the replica-seconds of the replicas the
reconciler sees running, and the requests the gateway served per deployment.

The reconciler's tick counts replica-seconds (`count`) and says which deployments it saw
(`saw`); the event loop's thread takes the gateway's request counters (`count_requests`) and
flushes every USAGE_FLUSH_SECONDS and at shutdown (`flush`). What is not flushed yet is lost
in a crash: a few seconds of counts, never a row.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Mapping

from truss_cli.controlplane.store import Deployment, Store, UsageAccrual

logger = logging.getLogger("truss.controlplane.reconciler")  # the reconciler's counts: its log, as before

USAGE_FLUSH_SECONDS = 10.0


class UsageMeter:
    def __init__(self, store: Store) -> None:
        self.store = store
        # Usage not yet in the store: id -> [replica_seconds, requests], and the names seen.
        self._lock = threading.Lock()
        self._pending: dict[str, list[float]] = {}
        self._names: dict[str, tuple[str, str, str]] = {}  # id -> (model id, model name, name)
        self._requests_seen: dict[str, int] = {}
        self._live: set[str] = set()  # the deployments the last tick saw
        self._last_flush = time.monotonic()

    def count(self, deployment: Deployment, model_name: str, *, replica_seconds: float = 0.0) -> None:
        """The tick saw `deployment` (its names are kept for the flush), running `replica_seconds`."""
        with self._lock:
            self._names[deployment.id] = (deployment.model_id, model_name, deployment.name)
            if replica_seconds:
                self._pending.setdefault(deployment.id, [0.0, 0])[0] += replica_seconds

    def saw(self, deployment_ids: Iterable[str]) -> None:
        """The deployments the tick saw: a deleted one's names go at the next flush."""
        with self._lock:
            self._live = set(deployment_ids)

    def live(self) -> set[str]:
        """The deployments the last tick saw (a copy: any thread)."""
        with self._lock:
            return set(self._live)

    def count_requests(self, totals: Mapping[str, int]) -> list[str]:
        """Take the gateway's request counts since it started (the event loop's thread).
        -> the deployments that served a request since the last look."""
        served_since: list[str] = []
        with self._lock:
            for deployment_id, total in totals.items():
                served = total - self._requests_seen.get(deployment_id, 0)
                if served > 0:
                    self._pending.setdefault(deployment_id, [0.0, 0])[1] += served
                    served_since.append(deployment_id)
                self._requests_seen[deployment_id] = total
        return served_since

    def flush_due(self) -> bool:
        return time.monotonic() - self._last_flush >= USAGE_FLUSH_SECONDS

    def flush(self) -> None:
        """Add what was counted since the last flush to the store (kept for the next one if
        the store refuses now)."""
        with self._lock:
            pending, self._pending = self._pending, {}
            names = dict(self._names)
            # Names of deleted deployments are needed only for their last counts (these).
            self._names = {i: n for i, n in self._names.items() if i in self._live}
        self._last_flush = time.monotonic()
        accruals = [
            UsageAccrual(deployment_id, *names.get(deployment_id, ("", "", "")), replica_seconds=seconds,
                         requests=int(requests))
            for deployment_id, (seconds, requests) in pending.items()
        ]
        try:
            self.store.usage.accrue(accruals)
        except Exception:
            logger.exception("recording usage failed; keeping it for the next flush")
            with self._lock:
                for accrual in accruals:
                    counts = self._pending.setdefault(accrual.deployment_id, [0.0, 0])
                    counts[0] += accrual.replica_seconds
                    counts[1] += accrual.requests
