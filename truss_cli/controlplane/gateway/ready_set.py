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

Retirement outlives the row: once a retired replica's row is STOPPED the reconciler no longer
names its URL, but its pod is SIGTERMed then and the feed may list it ready a moment longer
(the slice's terminating not seen yet). `RetiredAddresses` keeps withholding a URL that left
the reconciler's publish until the feed stops listing it, or `hold_seconds` passed (a bound, so
an address a pod the reconciler never names reuses is not withheld for ever), or a live
replica claims it.
"""

from __future__ import annotations

import time
from typing import Callable, Collection, Iterable, Mapping

from truss_cli.controlplane.gateway.routes import Replica


def routed_replicas(ready: Mapping[str, str], known: Mapping[str, str], withheld: Collection[str]) -> tuple[Replica, ...]:
    """`ready`: the feed's {url: name} for one deployment; `known`: the reconciler's {url:
    replica id} of its live replicas; `withheld`: URLs of replicas it is retiring."""
    return tuple(Replica(known.get(url, name), url) for url, name in sorted(ready.items())
                 if url in known or url not in withheld)


class RetiredAddresses:
    """One deployment's URLs that left the reconciler's publish (their replica stopped) and are
    still withheld from the feed's ready set (see the module's doc)."""

    def __init__(self, hold_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.hold_seconds = hold_seconds
        self._clock = clock
        self._since: dict[str, float] = {}  # url -> when it left the publish

    def published(self, before: Iterable[str], now: Mapping[str, str], withheld: Collection[str]) -> None:
        """A publish replaced `before` (the URLs the previous one named, live or retiring) with
        `now` ({url: replica id} of live replicas) and `withheld`: a URL named before and not now
        is retired; one named now is the reconciler's again."""
        left = self._clock()
        for url in before:
            if url not in now and url not in withheld:
                self._since.setdefault(url, left)
        for url in (*now, *withheld):
            self._since.pop(url, None)
        oldest = left - self.hold_seconds  # without a feed nothing else forgets them
        self._since = {url: since for url, since in self._since.items() if since > oldest}

    def still_withheld(self, ready: Mapping[str, str]) -> frozenset[str]:
        """The retired URLs to withhold now, given the feed's `ready` {url: name}; forgets
        those the feed no longer lists and those held long enough."""
        oldest = self._clock() - self.hold_seconds
        self._since = {url: since for url, since in self._since.items() if url in ready and since > oldest}
        return frozenset(self._since)
