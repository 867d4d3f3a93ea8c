"""The last hour of the gateway's traffic per (model, deployment), in memory, for the dashboard's charts.

Time is cut into fixed buckets (`step_seconds`, 10 s; `slots` of them, 360 = one hour) kept in a
ring per (model, deployment): bucket number n = unix time // step lives in slot n % slots, and a
slot still holding an older number is reset when it is reused. Nothing ticks: a request touches
its own slot (a few list/dict operations, on the event loop's thread like the rest of
GatewayMetrics, so no locks), and an idle deployment costs nothing (a deployment that never
had a request has no ring at all; a read skips slots whose number is out of the window).

Each bucket keeps the requests, the errors (answers >= 500, which include the gateway's own
502/503/504, plus responses a replica broke off after their status line was sent) and a
latency histogram with log-spaced bins: bin b holds [MIN_MS * GROWTH**b, MIN_MS * GROWTH**(b+1))
and a percentile is reported as its bin's geometric middle, so a p50/p95 is within
sqrt(GROWTH) - 1 = 2.5 % of a latency that was really observed (the nearest-rank one).
Latencies under MIN_MS (0.1 ms) count as the first bin: they are reported as about 0.1 ms.

Replica counts are not sampled by a timer either: the routing table reports each change of a
deployment's ready replicas (`replicas_changed`), and a read derives each bucket's count from
those changes (the highest count during the bucket, so a replica that lived 3 s still shows).

Kept in memory only: a control plane restart starts an empty history (`kept_since` says from
when a read's figures are known).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Optional

Key = tuple[str, str]  # (model_id, deployment_id); deployment "" = refused before one was chosen

STEP_SECONDS = 10
SLOTS = 360  # one hour
MIN_MS = 0.1
GROWTH = 1.05
_INVERSE_LOG_GROWTH = 1.0 / math.log(GROWTH)
_PER_MIN_MS = 1.0 / MIN_MS
_log = math.log
# Model ids come from URLs: bound the rings, as the routing table bounds its cached routes.
MAX_SERIES = 10_000
SWEEP_BUCKETS = 60  # free what went idle every 10 minutes


class _Bucket:
    __slots__ = ("number", "requests", "errors", "latency")

    def __init__(self, number: int) -> None:
        self.number = number
        self.requests = 0
        self.errors = 0
        self.latency: dict[int, int] = {}  # bin -> requests


@dataclass(frozen=True)
class Window:
    """A read: arrays of equal length, one item per bucket, oldest first."""

    step_seconds: int
    start: int  # unix seconds: the first bucket's start
    kept_since: int  # unix seconds: the history began (the control plane started) here
    time: list[int]
    requests: list[Optional[int]]  # None before kept_since
    errors: list[Optional[int]]
    requests_per_second: list[Optional[float]]
    error_rate: list[Optional[float]]  # 0..1; None where there were no requests
    p50_ms: list[Optional[float]]  # None where there were no requests
    p95_ms: list[Optional[float]]
    replicas: list[Optional[int]]  # None before kept_since


class MetricsHistory:
    def __init__(self, clock: Callable[[], float] = time.time, step_seconds: int = STEP_SECONDS,
                 slots: int = SLOTS) -> None:
        self._clock = clock
        self.step_seconds = step_seconds
        self.slots = slots
        self.kept_since = clock()
        self._rings: dict[Key, list[Optional[_Bucket]]] = {}
        # deployment id -> [(unix time, ready replicas)], in time order: each change, and the
        # last one before the window so the window's first bucket knows its count.
        self._replicas: dict[str, list[tuple[float, int]]] = {}
        # (model id, deployment id or None) -> finished bucket number -> its summary.
        self._summaries: dict[tuple[str, Optional[str]], dict[int, _Summary]] = {}
        self._newest: dict[Key, int] = {}  # each ring's newest bucket number
        self._next_sweep = 0

    # -- writes (the event loop's thread) ---------------------------------------------------

    def _bucket(self, key: Key) -> Optional[_Bucket]:
        """The slow path, once per key and bucket: a ring for a new key, a slot for a new bucket."""
        number = int(self._clock() // self.step_seconds)
        if number >= self._next_sweep:
            self._sweep(number)
        ring = self._rings.get(key)
        if ring is None:
            if len(self._rings) >= MAX_SERIES:
                return None
            ring = self._rings[key] = [None] * self.slots
        slot = number % self.slots
        bucket = ring[slot]
        if bucket is None or bucket.number != number:
            bucket = ring[slot] = _Bucket(number)
            self._newest[key] = number
        return bucket

    def observe(self, key: Key, status: int, seconds: float) -> None:
        # Every request: _bucket's lookups inlined (a method call costs as much as they do).
        ring = self._rings.get(key)
        number = int(self._clock() // self.step_seconds)
        bucket = None if ring is None else ring[number % self.slots]
        if bucket is None or bucket.number != number:
            bucket = self._bucket(key)
            if bucket is None:
                return
        bucket.requests += 1
        if status >= 500:
            bucket.errors += 1
        ms = seconds * 1000.0
        latency = bucket.latency
        index = int(_log(ms * _PER_MIN_MS) * _INVERSE_LOG_GROWTH) if ms > MIN_MS else 0
        latency[index] = latency.get(index, 0) + 1

    def broken_response(self, key: Key) -> None:
        """A replica broke off a response whose (2xx) status was already sent: an error the
        status will not show."""
        bucket = self._bucket(key)
        if bucket is not None:
            bucket.errors += 1

    def replicas_changed(self, deployment_id: str, ready: int) -> None:
        changes = self._replicas.get(deployment_id)
        if changes is None:
            self._forget_gone_replicas()
            self._replicas[deployment_id] = [(self._clock(), ready)]
            return
        if changes[-1][1] == ready:
            return
        now = self._clock()
        changes.append((now, ready))
        # Keep the changes of the last hour and the one before them.
        oldest = now - self.step_seconds * (self.slots + 1)
        while len(changes) > 1 and changes[1][0] <= oldest:
            del changes[0]

    def _forget_gone_replicas(self) -> None:
        """Drop the records of deployments at 0 replicas for over an hour (deleted ones, or
        asleep: a read then finds none and says "not known", which an hour of 0 would say)."""
        oldest = self._clock() - self.step_seconds * (self.slots + 1)
        for deployment_id in [d for d, c in self._replicas.items() if c[-1][1] == 0 and c[-1][0] < oldest]:
            del self._replicas[deployment_id]

    def _sweep(self, number: int) -> None:
        """Every SWEEP_BUCKETS: free the rings with nothing in the last hour (a deployment idle
        that long, or deleted, then holds no memory) and the kept summaries out of the hour."""
        self._next_sweep = number + SWEEP_BUCKETS
        oldest = number - self.slots
        for key in [k for k, newest in self._newest.items() if newest <= oldest]:
            del self._newest[key]
            self._rings.pop(key, None)
        for view in list(self._summaries):
            kept = self._summaries[view]
            for old in [n for n in kept if n <= oldest]:
                del kept[old]
            if not kept:
                del self._summaries[view]

    # -- reads ------------------------------------------------------------------------------

    def window(self, model_id: str, deployment_id: Optional[str], replica_deployments: Iterable[str],
               minutes: int = 60) -> Window:
        """The buckets of the last `minutes` (whole buckets, up to the one in progress) of one
        deployment of `model_id`, or (deployment_id None) of all the model's requests, with
        the replicas of `replica_deployments` summed.

        A finished bucket never changes (requests count in the bucket they end in), so its
        summary is kept per view: a refresh every 10 s computes the bucket in progress and the
        ones finished since, not the hour (merging an hour of busy histograms takes tens of ms,
        on the gateway's thread)."""
        now = self._clock()
        step = self.step_seconds
        count = max(1, min(self.slots, math.ceil(minutes * 60 / step)))
        last = int(now // step)
        first = last - count + 1
        known_from = int(self.kept_since // step)
        view = (model_id, deployment_id)
        kept = self._summaries.get(view)
        if kept is None:
            kept = self._summaries[view] = {}
        for old in [n for n in kept if n <= last - self.slots]:
            del kept[old]
        rings = [ring for key, ring in self._rings.items()
                 if key[0] == model_id and (deployment_id is None or key[1] == deployment_id)]
        replicas = self._replica_series(replica_deployments, first, count)
        window = Window(step, first * step, int(self.kept_since), [], [], [], [], [], [], [], replicas)
        for number in range(first, last + 1):
            window.time.append(number * step)
            if number < known_from:
                for series in (window.requests, window.errors, window.requests_per_second, window.error_rate,
                               window.p50_ms, window.p95_ms):
                    series.append(None)
                continue
            summary = kept.get(number)
            if summary is None:
                slot = number % self.slots
                summary = _summary([b for b in (ring[slot] for ring in rings) if b is not None and b.number == number])
                if number < last:
                    kept[number] = summary
            n, errors, p50, p95 = summary
            # The bucket in progress is as long as the time it has run so far.
            seconds = max(1.0, now - number * step) if number == last else step
            window.requests.append(n)
            window.errors.append(errors)
            window.requests_per_second.append(round(n / seconds, 3))
            window.error_rate.append(round(min(1.0, errors / n), 4) if n else None)
            window.p50_ms.append(p50)
            window.p95_ms.append(p95)
        return window

    def _replica_series(self, deployment_ids: Iterable[str], first: int, count: int) -> list[Optional[int]]:
        """Per bucket, the sum of the deployments' highest ready count during it; a deployment
        never reported (or forgotten after an hour at 0) had none. None before kept_since."""
        step = self.step_seconds
        known_from = int(self.kept_since // step)
        total: list[Optional[int]] = [None if first + i < known_from else 0 for i in range(count)]
        for deployment_id in deployment_ids:
            changes = self._replicas.get(deployment_id)
            if not changes:
                continue
            # One walk over the buckets and the changes together (both in time order).
            j, current = 0, None
            for i in range(count):
                start = (first + i) * step
                end = start + step
                while j < len(changes) and changes[j][0] <= start:
                    current = changes[j][1]  # the count at the bucket's start
                    j += 1
                highest = current
                while j < len(changes) and changes[j][0] < end:
                    current = changes[j][1]  # a change during the bucket
                    highest = current if highest is None or current > highest else highest
                    j += 1
                if highest is not None:  # else its first report came later
                    total[i] = highest if total[i] is None else total[i] + highest
        return total


_Summary = tuple[int, int, Optional[float], Optional[float]]  # requests, errors, p50 ms, p95 ms


def _summary(buckets: list[_Bucket]) -> _Summary:
    """One time bucket of several (model, deployment) rings, their histograms merged."""
    if not buckets:
        return 0, 0, None, None
    if len(buckets) == 1:
        merged = buckets[0].latency
    else:
        merged = {}
        for bucket in buckets:
            for index, n in bucket.latency.items():
                merged[index] = merged.get(index, 0) + n
    return (sum(b.requests for b in buckets), sum(b.errors for b in buckets),
            percentile(merged, 0.50), percentile(merged, 0.95))


def percentile(histogram: dict[int, int], q: float) -> Optional[float]:
    """The nearest-rank q-quantile of a log-binned histogram, as its bin's geometric middle (ms)."""
    total = sum(histogram.values())
    if not total:
        return None
    rank = max(1, math.ceil(q * total))
    seen = 0
    for index in sorted(histogram):
        seen += histogram[index]
        if seen >= rank:
            return round(MIN_MS * GROWTH ** (index + 0.5), 3)
    return None  # unreachable: seen reaches total
