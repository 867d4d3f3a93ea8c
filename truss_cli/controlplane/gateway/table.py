"""An in-memory resolver: the routing table the control plane keeps and the reconciler updates.

The gateway resolves every request, so the answer comes from dicts, not the store. The
control plane writes the table when a deployment is created, promoted or deleted
(`set_model`) and whenever the set of ready replicas changes (`set_replicas`); the
reconciler marks a deployment `starting` while it wakes or scales up from zero, and requests
for it park until a replica is ready (or the park timeout passes). A deployment meant to be
inactive (`set_inactive`) answers 404 DEPLOYMENT_INACTIVE with the reason the control plane
gave (which deployment, how to activate it); a deleted one is simply not in the table.

A deployment scaled to zero (`set_replicas(..., asleep=True)`) is woken by the first request
that finds it so: the table calls `on_wake(deployment_id)` once, marks it starting at once
(so that request and the next ones park, not fail) and keeps it starting until the
reconciler publishes it awake (WAKING_UP, then ready) - even if a tick that began before the
wake still says asleep. `wake(model, target)` does the same for the wake route, and also
resets the idle clock of a target that is awake. All of this is off the hot path: a target
with a ready replica never looks at it.

Each deployment carries its concurrency cap (`set_concurrency`: autoscaling's
concurrency_target; 0 = none) into the routes it resolves to; the gateway queues requests
beyond it. When a deployment's replicas or cap change, `on_capacity(deployment_id, replicas,
cap)` lets the gateway hand the new room to requests waiting in line.

With a runtime that has a ready feed (`set_ready`, runtimes/base.ReadyFeed), a deployment's
replicas are the feed's ready URLs (ready_set.py), changed the moment the feed says so: a
replica that stops being ready leaves at once, one that becomes ready takes traffic and
releases parked requests at once. The reconciler's publishes still say which deployments exist,
which are starting, asleep or inactive, and name the replicas and the retiring ones. While
the reconciler says a deployment has a ready replica the feed does not list yet, requests park
(for the feed's word or the reconciler's next publish) rather than fail. `set_ready(None)`
(the feed ended) falls back to the reconciler's view. A replica retired and then stopped stays
withheld while the feed still lists its pod ready (ready_set.RetiredAddresses; at most
`retired_hold_seconds`).

A target that resolves to a Route gives the same Route until the table changes, so it is kept
(`_routes`) and every change clears what was kept: a predict then costs two dict lookups
instead of building a DeploymentRoute per deployment of the split.
"""

from __future__ import annotations

import asyncio
import time
from typing import Callable, Iterable, Mapping, Optional, Sequence, Union

from truss_cli.controlplane.gateway.ready_set import RetiredAddresses, routed_replicas
from truss_cli.controlplane.gateway.routes import DeploymentRoute, NotReady, Parked, Replica, Resolution, Route, UnknownTarget

PRODUCTION = "production"
_MAX_ROUTES = 10_000
ENVIRONMENT_PREFIX = "environments/"


class RoutingTable:
    def __init__(self, park_timeout_seconds: float = 60.0, retry_after_seconds: int = 5,
                 retired_hold_seconds: float = 30.0, clock: Callable[[], float] = time.monotonic,
                 await_first_publish: bool = False) -> None:
        self.park_timeout_seconds = park_timeout_seconds
        # How long a stopped replica's URL stays withheld while the feed still lists it (a
        # pod's shutdown is far shorter; the bound frees an address a pod nobody claims reuses).
        self.retired_hold_seconds = retired_hold_seconds
        self._clock = clock
        self.retry_after_seconds = retry_after_seconds
        self._targets: dict[str, dict[str, tuple[tuple[str, float], ...]]] = {}
        self._names: dict[str, str] = {}  # model id -> its name, for the 404s a user reads
        self._replicas: dict[str, tuple[Replica, ...]] = {}  # what requests are routed to
        # What the reconciler last published per deployment: its ready replicas, (starting,
        # asleep), its live replicas' {url: replica id} and the URLs of those it retires.
        self._published: dict[str, tuple[Replica, ...]] = {}
        self._flags: dict[str, tuple[bool, bool]] = {}
        self._known: dict[str, dict[str, str]] = {}
        self._withheld: dict[str, frozenset[str]] = {}
        self._retired: dict[str, RetiredAddresses] = {}
        # The runtime's ready feed: deployment id -> {ready url: name}; None: no feed (or it ended).
        self._feed: Optional[dict[str, dict[str, str]]] = None
        self._starting: dict[str, asyncio.Event] = {}
        self._inactive: dict[str, str] = {}  # deployment id -> the 404's detail
        self._asleep: set[str] = set()  # scaled to zero, no wake asked yet
        # deployment id -> asked to wake (True) or only to reset its idle clock (False).
        self.on_wake: Optional[Callable[[str, bool], None]] = None
        self._concurrency: dict[str, int] = {}
        self.on_capacity: Optional[Callable[[str, Sequence[Replica], int], None]] = None
        # (deployment id, ready replicas) on each change of the count: the metrics history's.
        self.on_replicas: Optional[Callable[[str, int], None]] = None
        self._routes: dict[tuple[str, str], Route] = {}  # (model id, target) -> its Route, until a change
        # Set by the reconciler's first publish (`loaded`). Until then a control plane's table
        # (`await_first_publish`) knows no model, so a request to a restarted control plane
        # parks for the first tick instead of answering MODEL_NOT_FOUND.
        self._loaded = asyncio.Event()
        if not await_first_publish:
            self._loaded.set()

    def model_ids(self) -> set[str]:
        return set(self._targets)

    def set_model(self, model_id: str, targets: Mapping[str, Sequence[tuple[str, float]]],
                  name: Optional[str] = None) -> None:
        """`targets`: "production", "deployment/<id>", ... -> [(deployment_id, weight), ...];
        an environment that serves nothing yet has an empty split. `name`: the model's."""
        self._routes.clear()
        self._targets[model_id] = {target: tuple(split) for target, split in targets.items()}
        if name is not None:
            self._names[model_id] = name

    def remove_model(self, model_id: str) -> None:
        self._routes.clear()
        self._targets.pop(model_id, None)
        self._names.pop(model_id, None)

    def set_replicas(self, deployment_id: str, replicas: Sequence[Replica], starting: bool = False,
                     asleep: bool = False, known: Optional[Mapping[str, str]] = None,
                     withheld: Iterable[str] = ()) -> None:
        """The deployment's ready replicas now; `starting`: more are on their way, so park rather than refuse;
        `asleep`: scaled to zero, the next request wakes it. With a ready feed: `known`, the
        {url: replica id} of its live replicas, ready or not (default: `replicas`'), and
        `withheld`, the URLs of replicas being retired (ready_set.py)."""
        named_before = (*self._known.get(deployment_id, ()), *self._withheld.get(deployment_id, ()))
        self._published[deployment_id] = tuple(replicas)
        self._flags[deployment_id] = (starting, asleep)
        self._known[deployment_id] = dict(known) if known is not None else {r.url: r.id for r in replicas}
        self._withheld[deployment_id] = frozenset(withheld)
        retired = self._retired.get(deployment_id)
        if retired is None:
            retired = self._retired[deployment_id] = RetiredAddresses(self.retired_hold_seconds, self._clock)
        retired.published(named_before, self._known[deployment_id], self._withheld[deployment_id])
        self._settle(deployment_id)

    def set_ready(self, feed: Optional[Mapping[str, Mapping[str, str]]]) -> None:
        """The runtime's ready feed's latest picture ({deployment id: {ready url: name}},
        every deployment), or None when it ended: route by the reconciler's view again."""
        self._feed = None if feed is None else {d: dict(ready) for d, ready in feed.items()}
        for deployment_id in list(self._published):
            self._settle(deployment_id)

    def _settle(self, deployment_id: str) -> None:
        """Route the deployment by what is known now (a publish or the feed changed)."""
        self._routes.clear()
        published = self._published[deployment_id]
        starting, asleep = self._flags[deployment_id]
        if self._feed is None:
            replicas = published
        else:
            ready = self._feed.get(deployment_id, {})
            withheld = self._withheld[deployment_id] | self._retired[deployment_id].still_withheld(ready)
            replicas = routed_replicas(ready, self._known[deployment_id], withheld)
            # The reconciler saw one ready that the feed does not list yet: wait for its word.
            starting = starting or bool(published)
        before = self._replicas.get(deployment_id)
        self._replicas[deployment_id] = replicas
        if self.on_replicas is not None and (before is None or len(before) != len(replicas)):
            self.on_replicas(deployment_id, len(replicas))
        if self.on_capacity is not None and before is not None and before != replicas:
            self.on_capacity(deployment_id, replicas, self._concurrency.get(deployment_id, 0))
        if asleep:
            if deployment_id not in self._starting:  # else a wake is on its way: keep its requests parked
                self._asleep.add(deployment_id)
            return
        self._asleep.discard(deployment_id)
        event = self._starting.get(deployment_id)
        if replicas or not starting:
            if event is not None:
                del self._starting[deployment_id]
                event.set()  # wakes the parked requests, which resolve again
        elif event is None:
            self._starting[deployment_id] = asyncio.Event()

    def set_concurrency(self, deployment_id: str, concurrency: int) -> None:
        """At most `concurrency` requests in flight per replica of the deployment (0: no cap)."""
        self._routes.clear()
        before = self._concurrency.get(deployment_id, 0)
        if concurrency:
            self._concurrency[deployment_id] = concurrency
        else:
            self._concurrency.pop(deployment_id, None)
        if concurrency != before and self.on_capacity is not None:
            self.on_capacity(deployment_id, self._replicas.get(deployment_id, ()), concurrency)

    def set_inactive(self, deployment_id: str, detail: Optional[str]) -> None:
        """`detail` (why and how to activate it): the deployment is inactive; None: it is not."""
        self._routes.clear()
        if detail is None:
            self._inactive.pop(deployment_id, None)
        else:
            self._inactive[deployment_id] = detail

    def loaded(self) -> None:
        """The reconciler published its first picture: an unknown model is unknown from now on."""
        self._loaded.set()

    def keep_only(self, deployment_ids: Iterable[str]) -> None:
        """Forget every deployment not in `deployment_ids` (deleted ones); requests parked on
        one wake and resolve again, to a 404."""
        self._routes.clear()
        keep = set(deployment_ids)
        for deployment_id in set(self._published) - keep:
            for published in (self._published, self._flags, self._known, self._withheld, self._retired):
                del published[deployment_id]
        for deployment_id in set(self._replicas) - keep:
            del self._replicas[deployment_id]
            if self.on_replicas is not None:
                self.on_replicas(deployment_id, 0)
            if self.on_capacity is not None:  # requests waiting in its line resolve again, to a 404
                self.on_capacity(deployment_id, (), 0)
        for deployment_id in set(self._inactive) - keep:
            del self._inactive[deployment_id]
        for deployment_id in set(self._concurrency) - keep:
            del self._concurrency[deployment_id]
        self._asleep &= keep
        for deployment_id in set(self._starting) - keep:
            self._starting.pop(deployment_id).set()

    async def resolve(self, model_id: str, target: str) -> Resolution:
        route = self._routes.get((model_id, target))
        if route is not None:
            return route
        targets = self._targets.get(model_id)
        if targets is None:
            if not self._loaded.is_set():
                return Parked(self._loaded.wait, self.park_timeout_seconds, "the control plane is starting",
                              self.retry_after_seconds)
            known = ", ".join(sorted(self._targets)) or "none"
            return UnknownTarget(f"no model {model_id!r}; models: {known}", "MODEL_NOT_FOUND")
        split = targets.get(target)
        if not split:
            return self._unknown(model_id, target, targets)
        if self._inactive:
            live = tuple((d, w) for d, w in split if d not in self._inactive)
            if not live and split:
                return UnknownTarget(self._inactive[split[0][0]], "DEPLOYMENT_INACTIVE")
            split = live
        caps = self._concurrency
        deployments = tuple(DeploymentRoute(d, self._replicas.get(d, ()), w, caps.get(d, 0)) for d, w in split)
        if any(d.replicas and d.weight > 0 for d in deployments):
            route = Route(deployments)
            if len(self._routes) < _MAX_ROUTES:  # targets come from URLs; only existing ones get here, still bounded
                self._routes[(model_id, target)] = route
            return route
        if self._asleep:
            for deployment_id, _ in split:
                if deployment_id in self._asleep:
                    self._wake(deployment_id)
        starting = [(w, d) for d, w in split if d in self._starting]
        if starting:
            waiting = [self._starting[d] for _, d in starting]
            return Parked(lambda: _first_of(waiting), self.park_timeout_seconds, f"{target} of model {model_id!r} is starting",
                          self.retry_after_seconds, max(starting)[1])
        return NotReady(f"no replica of {target} of model {model_id!r} is ready", self.retry_after_seconds)


    def wake(self, model_id: str, target: str) -> Union[UnknownTarget, list[tuple[str, bool]]]:
        """The wake route: wake the target's deployments that are scaled to zero and reset the
        idle clock of all. -> [(deployment id, woken now)], or why the target is unknown."""
        targets = self._targets.get(model_id)
        if targets is None:
            return UnknownTarget(f"no model {model_id!r}", "MODEL_NOT_FOUND")
        split = targets.get(target)
        if not split:
            return self._unknown(model_id, target, targets)
        live = [d for d, _ in split if d not in self._inactive]
        if not live and split:
            return UnknownTarget(self._inactive[split[0][0]], "DEPLOYMENT_INACTIVE")
        woken = []
        for deployment_id in live:
            asleep = deployment_id in self._asleep
            if asleep:
                self._wake(deployment_id)
            elif self.on_wake is not None:
                self.on_wake(deployment_id, False)
            woken.append((deployment_id, asleep))
        return woken

    def _unknown(self, model_id: str, target: str, targets: Mapping[str, tuple]) -> UnknownTarget:
        """Why `target` resolves to nothing: an environment with no deployment yet (and how to
        give it one), an environment that does not exist (and those that do), or another
        target the model does not have."""
        model = self._names.get(model_id, model_id)
        environment = PRODUCTION if target == PRODUCTION else target.removeprefix(ENVIRONMENT_PREFIX)
        if target in targets:  # an environment that serves nothing yet
            return UnknownTarget(
                f"environment {environment} of model {model} has no deployment yet", "ENVIRONMENT_EMPTY",
                f"truss push --environment {environment}, or truss deployments promote --model {model} "
                f"DEPLOYMENT --environment {environment}")
        if target.startswith(ENVIRONMENT_PREFIX):
            names = sorted({t.removeprefix(ENVIRONMENT_PREFIX) for t in targets if t.startswith(ENVIRONMENT_PREFIX)}
                           | ({PRODUCTION} if PRODUCTION in targets else set()))
            return UnknownTarget(f"model {model} has no environment {environment!r}; its environments: "
                                 f"{', '.join(names) or 'none'}",
                                 hint=f"create it: truss environments create --model {model} {environment}")
        return UnknownTarget(f"model {model!r} has no {target!r}; it has: {', '.join(sorted(targets)) or 'nothing'}")

    def _wake(self, deployment_id: str) -> None:
        self._asleep.discard(deployment_id)
        if deployment_id not in self._starting:
            self._starting[deployment_id] = asyncio.Event()
        if self.on_wake is not None:
            self.on_wake(deployment_id, True)


async def _first_of(events: list[asyncio.Event]) -> None:
    if len(events) == 1:
        await events[0].wait()
        return
    tasks = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
