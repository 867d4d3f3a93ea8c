"""What one reconciler tick found for the gateway (`Routing`), and how it lands in the
gateway's routing table (`apply_to`, on the event loop's thread).

The tick fills a `Routing` in its worker thread; the loop publishes it. `seq` orders ticks,
so an older one never overwrites a newer (the reconciler checks it before applying).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from typing import Collection, Iterable, Optional

from truss_cli.controlplane.gateway import Replica as Upstream
from truss_cli.controlplane.gateway import RoutingTable
from truss_cli.controlplane.retirement import STOPPED
from truss_cli.controlplane.store import Deployment, Model, Replica


@dataclass
class Routing:
    """What one tick found: each model's targets, each deployment's ready replicas, and why the
    inactive ones answer 404. `seq` orders ticks, so an older one never overwrites a newer."""

    seq: int = 0
    models: dict[str, dict[str, list[tuple[str, float]]]] = field(default_factory=dict)
    replicas: dict[str, tuple[list[Upstream], bool]] = field(default_factory=dict)  # id -> (ready, starting)
    inactive: dict[str, str] = field(default_factory=dict)  # id -> the 404's detail
    asleep: set[str] = field(default_factory=set)  # scaled to zero: a request wakes them
    concurrency: dict[str, int] = field(default_factory=dict)  # id -> requests per replica at once (0: no cap)
    names: dict[str, str] = field(default_factory=dict)  # model id -> name (the gateway's 404s say it)
    # For a runtime with a ready feed (gateway/ready_set.py): each deployment's live replicas
    # {url: replica id}, ready or not, and the URLs of the replicas it is retiring.
    known: dict[str, dict[str, str]] = field(default_factory=dict)
    withheld: dict[str, set[str]] = field(default_factory=dict)

    def starting(self) -> bool:
        """A deployment is coming up with no replica ready (requests for it park)."""
        return any(starting and not ready for ready, starting in self.replicas.values())

    def apply_to(self, table: RoutingTable) -> None:
        """Make the gateway route by this (the loop's thread)."""
        for model_id, targets in self.models.items():
            table.set_model(model_id, targets, self.names.get(model_id))
        for model_id in table.model_ids() - set(self.models):  # deleted models
            table.remove_model(model_id)
        for deployment_id, (ready, starting) in self.replicas.items():
            # Inactive first: the requests a replica change wakes resolve against it.
            table.set_inactive(deployment_id, self.inactive.get(deployment_id))
            table.set_concurrency(deployment_id, self.concurrency.get(deployment_id, 0))
            table.set_replicas(deployment_id, ready, starting, deployment_id in self.asleep,
                               self.known.get(deployment_id), self.withheld.get(deployment_id, ()))
        table.keep_only(self.replicas)
        table.loaded()


def replica_addresses(routing: Routing, rows: Iterable[Replica], retiring: Collection[str]) -> None:
    """Fill `routing.known` and `.withheld` from the replica rows (after the tick acted, so a
    URL learnt and a retirement queued in this tick are in): what a ready feed's URLs are
    checked against. A deployment with a live row and no address yet is known with none,
    so the ready list never stands in for it. A STOPPED row is left out: the table keeps its
    URL withheld while the feed still lists its pod (gateway/ready_set.RetiredAddresses)."""
    for row in rows:
        if row.phase == STOPPED:
            continue
        url = row.handle.get("url")
        known = routing.known.setdefault(row.deployment_id, {})
        if not url:
            continue
        if row.id in retiring:
            routing.withheld.setdefault(row.deployment_id, set()).add(url)
        else:
            known[url] = row.handle.get("replica_id") or row.id


def inactive_detail(deployment: Deployment, model: Optional[Model]) -> str:
    """Why an inactive deployment's path answers 404, and the command that activates it."""
    model_name = model.name if model else deployment.model_id
    command = " ".join(shlex.quote(w) for w in ("truss", "deployments", "activate", "--model", model_name, deployment.name))
    return (f"deployment {deployment.name} ({deployment.id}) of model {model_name} is inactive; "
            f"activate it with: {command}")
