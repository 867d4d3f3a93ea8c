"""The running control plane's parts, joined: store, runtime, trees, builds, reconciler, gateway.

One object the routes reach through `request.app.state.plane`; `start`/`stop` are the
app's lifespan, in the order a crash-safe restart needs (requeue, adopt, then reconcile).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from truss_cli import __version__
from truss_cli.controlplane.auth import GatewayAuthorizer
from truss_cli.controlplane.builds import BuildWorkers
from truss_cli.controlplane.gateway import Gateway, GatewayMetrics, RoutingTable
from truss_cli.controlplane.dev_rebuild import DevelopmentRebuilds
from truss_cli.controlplane.patches import Syncer
from truss_cli.controlplane.ready_feed import ReadyFeedFollower
from truss_cli.controlplane.rollouts import Rollouts
from truss_cli.controlplane.reconciler import DEV_IDLE_SECONDS, Reconciler
from truss_cli.controlplane.release import Release
from truss_cli.controlplane.runtimes.base import Runtime, ready_feed
from truss_cli.controlplane.runtimes.environments import environment_builder, replica_provisioner
from truss_cli.controlplane.store import Removed, Store, states
from truss_cli.controlplane.trees import SWEEP_GRACE_SECONDS, Trees

logger = logging.getLogger("truss.controlplane")


@dataclass
class Options:
    build_workers: int = 2
    # How old an unused tree or blob must be before the sweep deletes it (a push in progress
    # has touched everything it uses moments ago).
    sweep_grace_seconds: float = SWEEP_GRACE_SECONDS
    # How long a development deployment may go without a request or wake before it scales to zero.
    dev_idle_seconds: float = DEV_IDLE_SECONDS


class ControlPlane:
    def __init__(self, store: Store, runtime: Runtime, runtime_reason: str, options: Options) -> None:
        self.version = __version__
        self.store = store
        self.runtime = runtime
        self.runtime_reason = runtime_reason
        self.options = options
        self.trees = Trees(store)
        self.table = RoutingTable(await_first_publish=True)  # requests park until the first tick
        self.gateway = Gateway(self.table, GatewayAuthorizer(store))
        # Rolling and canary promotions: stepped first in every reconciler tick; their replica
        # counts override the autoscaler's for the two deployments they drive.
        self.rollouts = Rollouts(store)
        self.reconciler = Reconciler(store, runtime, self.table, lambda: served_requests(self.gateway.metrics),
                                     lambda: busy_deployments(self.gateway.metrics), options.dev_idle_seconds,
                                     trees=self.trees, load=self.gateway.load.take,
                                     in_flight_at=lambda url: self.gateway.balancer.outstanding.get(url, 0),
                                     parked=lambda: any(self.gateway.metrics.parked.values()),
                                     rollout_replicas=self.rollouts.rollout_replicas, before_tick=self.rollouts.tick)
        # A runtime that learns readiness itself (Kubernetes EndpointSlices): the gateway routes by it.
        feed = ready_feed(runtime)
        self.ready_feed = None
        if feed is not None:
            self.reconciler.publish_addresses = True
            self.ready_feed = ReadyFeedFollower(feed, self.table, on_fallback=self._feed_ended)
        # Requests waiting for room at a deployment go when its replicas or cap change.
        self.table.on_capacity = self.gateway.capacity_changed
        # The dashboard's replica charts: each change of a deployment's ready replicas.
        self.table.on_replicas = self.gateway.metrics.history.replicas_changed
        self.syncer = Syncer(store, self.trees, self.gateway.upstream.forget,
                             getattr(runtime, "development_replicas", False),
                             environment_for=environment_builder(runtime), provision=replica_provisioner(runtime))
        # A development rebuild runs beside the serving replica (contract C2); at its end it
        # syncs what was staged meanwhile.
        self.rebuilds = DevelopmentRebuilds(store, runtime, self.trees, self.reconciler, self.syncer.sync)
        self.syncer.start_rebuild = self.rebuilds.start
        self.table.on_wake = self._on_wake
        self.builds = BuildWorkers(store, runtime, self.trees, options.build_workers, self._built)
        # Frees what a delete removed (replicas, artifacts, trees, blobs); an API worker thread runs it.
        self.release = Release(store, runtime, self.trees, self.reconciler, options.sweep_grace_seconds)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._sweep: asyncio.Task[None] | None = None

    def _on_wake(self, deployment_id: str, asleep: bool) -> None:
        """The gateway found a deployment scaled to zero (`asleep`: wake it), or the wake route
        was called for one that is awake (reset its idle clock). The loop's thread: no I/O."""
        if asleep:
            self.reconciler.request_wake(deployment_id)
        else:
            self.reconciler.touch(deployment_id)

    def _feed_ended(self) -> None:
        self.reconciler.publish_addresses = False

    def _built(self) -> None:  # a build worker's thread
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self.reconciler.wake)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        await asyncio.to_thread(self.store.builds.requeue_interrupted)
        await asyncio.to_thread(self._queue_unbuilt)
        await asyncio.to_thread(self.reconciler.adopt)
        if self.ready_feed is not None:  # after adopt: a pod it stopped never takes a request
            self.ready_feed.start()
        self.builds.start()
        self._task = asyncio.create_task(self.reconciler.run())
        await self.rebuilds.resume()  # after adopt: a replica a cut-short rebuild started is stopped
        # What a crash in the middle of a delete left (the sweep derives it from the rows).
        self._sweep = asyncio.create_task(asyncio.to_thread(self.release.sweep))

    def _queue_unbuilt(self) -> None:
        """A crash between creating a deployment and queueing its build left it BUILDING with
        no build to run: queue one (deriving the action from the rows, not from memory)."""
        for deployment in self.store.deployments.list():
            if deployment.status != states.BUILDING:
                continue
            latest = self.store.builds.latest(deployment.id)
            if latest is None or latest.state in (states.BUILD_SUCCEEDED, states.BUILD_FAILED_STATE):
                self.store.builds.queue(deployment.id)

    async def forget_and_release(self, removed: Removed) -> None:
        """After a delete: the gateway forgets the deployments first (their paths answer 404
        from now on rather than reach a replica that is stopping), then what they held is freed."""
        try:
            await self.reconciler.refresh()
        except Exception:  # the loop's next tick forgets them too; never skip freeing
            logger.exception("refreshing the routing after a delete failed")
        await asyncio.to_thread(self.release, removed)

    async def stop(self) -> None:
        """Stop building and reconciling; replicas keep running (re-adopted next start)."""
        if self._task is not None:
            self._task.cancel()
        if self.ready_feed is not None:
            await self.ready_feed.stop()
        await self.rebuilds.stop()
        await asyncio.to_thread(self.builds.stop)
        self.reconciler.count_requests()
        await asyncio.to_thread(self.reconciler.flush_usage)
        await self.gateway.aclose()
        self.store.close()

    def gauges(self) -> str:
        """The control plane's own numbers, beside the gateway's, in Prometheus text."""
        deployments = self.store.deployments.list()
        replicas = [r for r in self.store.replicas.list() if r.phase != "stopped"]
        lines = ["# TYPE truss_controlplane_deployments gauge"]
        for status in sorted({d.status for d in deployments}):
            count = sum(1 for d in deployments if d.status == status)
            lines.append(f'truss_controlplane_deployments{{status="{status}"}} {count}')
        lines += ["# TYPE truss_controlplane_replicas gauge", f"truss_controlplane_replicas {len(replicas)}"]
        return "\n".join(lines) + "\n"


def served_requests(metrics: GatewayMetrics) -> dict[str, int]:
    """The requests the gateway took to each deployment since it started, any status. Read on
    the event loop's thread, which is the one that counts them."""
    totals: dict[str, int] = {}
    for (_model, deployment, _status_class), count in metrics.requests.items():
        if deployment:  # "" is a request refused before a deployment was chosen
            totals[deployment] = totals.get(deployment, 0) + count
    return totals


def busy_deployments(metrics: GatewayMetrics) -> list[str]:
    """The deployments with a request in flight through the gateway now (the loop's thread)."""
    return [deployment for (_model, deployment), count in metrics.in_flight.items() if count > 0 and deployment]
