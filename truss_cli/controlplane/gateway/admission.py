"""The gateway's concurrency cap: at most `concurrency_target` requests in flight per replica
of a deployment (its autoscaling setting); the rest wait here, first come first served, until a
replica has room or the park timeout passes (issue 11: requests beyond capacity queue, they do
not fail).

A deployment's waiting line is a deque of futures. A request finishing on a capped deployment
calls `release`, which wakes the first waiter; the waiter picks again (the replicas may have
changed meanwhile). New replicas (a scale-up) wake as many waiters as they have slots. A
request that arrives while others wait joins the line instead of overtaking it. Everything
runs on the event loop's thread: no locks.

The load the autoscaler reads is kept here too (`LoadMeter`): per deployment, requests in
flight plus requests waiting, integrated over time so a 10 ms request between two samples is
counted for its 10 ms, not missed.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Optional


class Admission:
    def __init__(self) -> None:
        self._lines: dict[str, deque[asyncio.Future[None]]] = {}

    def waiting(self, deployment_id: str) -> int:
        line = self._lines.get(deployment_id)
        return sum(1 for f in line if not f.done()) if line else 0

    async def wait(self, deployment_id: str, timeout: float) -> bool:
        """Queue for a slot of the deployment: True when released, False when `timeout` passed."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        line = self._lines.setdefault(deployment_id, deque())
        line.append(future)
        try:
            await asyncio.wait_for(asyncio.shield(future), max(timeout, 0.0))
            return True
        except asyncio.TimeoutError:
            return future.done() and not future.cancelled()  # released at the last moment: take it
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release(deployment_id)  # released, but the caller is gone: pass the slot on
            raise
        finally:
            if not future.done():
                future.cancel()
            if future in line:
                line.remove(future)
            if not line and self._lines.get(deployment_id) is line:
                del self._lines[deployment_id]

    def release(self, deployment_id: str, count: int = 1) -> None:
        """Wake the first `count` waiters of the deployment."""
        line = self._lines.get(deployment_id)
        while line and count > 0:
            future = line.popleft()
            if not future.done():
                future.set_result(None)
                count -= 1
        if line is not None and not line:
            self._lines.pop(deployment_id, None)

    def release_all(self, deployment_id: str) -> None:
        """The deployment's replicas changed in a way that may refuse everyone (deleted,
        inactive, no replica left): every waiter resolves again."""
        self.release(deployment_id, count=1 << 30)


class LoadMeter:
    """Requests in flight or waiting per deployment, as a time average between two `take`s."""

    def __init__(self) -> None:
        # deployment id -> [count now, count x seconds since the last take, when the count last changed]:
        # one list per deployment, so a change (twice per request) is one dict lookup.
        self._meters: dict[str, list] = {}
        self._taken = time.monotonic()

    def change(self, deployment_id: str, delta: int) -> None:
        now = time.monotonic()
        meter = self._meters.get(deployment_id)
        if meter is None:
            self._meters[deployment_id] = [delta, 0.0, now]
            return
        meter[1] += meter[0] * (now - meter[2])
        meter[0] += delta
        meter[2] = now

    def take(self, now: Optional[float] = None) -> dict[str, float]:
        """deployment id -> its mean requests in flight or waiting since the last take (those
        with none in that time are left out: 0)."""
        now = time.monotonic() if now is None else now
        span = max(now - self._taken, 1e-6)
        self._taken = now
        averages = {}
        for deployment_id, meter in list(self._meters.items()):
            count = meter[0]
            area = meter[1] + count * (now - meter[2])
            if area > 0:
                averages[deployment_id] = area / span
            if count == 0:  # keep no dead keys: deployments come and go
                del self._meters[deployment_id]
            else:
                meter[1], meter[2] = 0.0, now
        return averages
