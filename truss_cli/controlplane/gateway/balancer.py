"""Which replica takes a request: a deployment by weight, then its replica with the fewest
requests outstanding through this gateway.

Fewest-outstanding sends work away from a replica that is slow right now (a long stream, a
big batch) without any health signal beyond the gateway's own counts. Ties go round robin
(a rotating start index), so two idle replicas share sequential traffic evenly instead of
the first one taking it all. Counts are keyed by replica URL and live on the event loop
thread only, so no lock.

A deployment with a `concurrency` cap (autoscaling's concurrency_target) takes no request on
a replica already holding that many: `pick` then answers the deployment with no replica, and
the gateway queues the request (admission.py).
"""

from __future__ import annotations

import random
from collections import defaultdict
from typing import Collection, Optional, Sequence

from truss_cli.controlplane.gateway.routes import DeploymentRoute, Replica


class Balancer:
    def __init__(self) -> None:
        self.outstanding: defaultdict[str, int] = defaultdict(int)
        self._turn = 0

    def pick(
        self, deployments: Sequence[DeploymentRoute], exclude: Collection[str] = ()
    ) -> Optional[tuple[DeploymentRoute, Optional[Replica]]]:
        """A (deployment, replica) not in `exclude` (URLs that already failed), or None;
        (deployment, None) when every replica of the deployment picked is at its cap."""
        if exclude:
            candidates = [d for d in deployments if d.weight > 0 and any(r.url not in exclude for r in d.replicas)]
        else:  # every request but a retry: no generator per deployment
            candidates = [d for d in deployments if d.weight > 0 and d.replicas]
        if not candidates:
            return None
        if len(candidates) == 1:
            deployment = candidates[0]
        else:
            deployment = random.choices(candidates, weights=[d.weight for d in candidates])[0]
        replicas = [r for r in deployment.replicas if r.url not in exclude] if exclude else deployment.replicas
        self._turn += 1
        count = len(replicas)
        start = self._turn % count
        best, best_load = None, None
        outstanding = self.outstanding
        for offset in range(count):
            replica = replicas[(start + offset) % count]
            load = outstanding.get(replica.url, 0)
            if best_load is None or load < best_load:
                best, best_load = replica, load
                if load == 0:
                    break
        assert best is not None and best_load is not None
        if deployment.concurrency and best_load >= deployment.concurrency:
            return deployment, None
        return deployment, best

    def has_room(self, deployment: DeploymentRoute) -> bool:
        """A replica of the deployment is below its cap."""
        cap = deployment.concurrency
        return not cap or any(self.outstanding.get(r.url, 0) < cap for r in deployment.replicas)

    def started(self, replica: Replica) -> None:
        self.outstanding[replica.url] += 1

    def finished(self, replica: Replica) -> None:
        left = self.outstanding[replica.url] - 1
        if left:
            self.outstanding[replica.url] = left
        else:
            del self.outstanding[replica.url]  # replicas come and go; keep no dead keys
