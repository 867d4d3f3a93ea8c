"""Which replicas of a deployment take traffic when the runtime has a ready feed
(runtimes/base.ReadyFeed, e.g. Kubernetes EndpointSlices).

The feed is the authority on readiness: a URL takes traffic exactly while the feed lists it
ready, without waiting for the reconciler's next look. The reconciler still has the last
word on two things the feed cannot know:

- the replica's id: a URL the reconciler has recorded (ready or still loading) is shown
  with its replica id (x-truss-replica-id, which the gateway always sets, and the gateway's
  log lines); one it has not recorded yet, with the feed's name for it (a pod's name);
- retirement: a replica the reconciler is retiring (scale-down, scale to zero) must take no
  new request from the publish that unrouted it on, even while the feed still lists it
  (until its pod is deleted, it is ready). A URL of a live replica wins over a retiring one,
  since addresses are reused (a new pod may get a stopped pod's IP).
"""

from __future__ import annotations

from typing import Collection, Mapping

from truss_cli.controlplane.gateway.routes import Replica


def routed_replicas(ready: Mapping[str, str], known: Mapping[str, str], withheld: Collection[str]) -> tuple[Replica, ...]:
    """`ready`: the feed's {url: name} for one deployment; `known`: the reconciler's {url:
    replica id} of its live replicas; `withheld`: URLs of replicas it is retiring."""
    return tuple(Replica(known.get(url, name), url) for url, name in sorted(ready.items())
                 if url in known or url not in withheld)
