"""The prediction gateway: Baseten's inference paths -> a ready replica, streamed both ways.

The control plane builds one `Gateway(resolver, authorizer)`, mounts it (it is an ASGI app)
and serves `gateway.render_metrics()` at /metrics; see routes.py for what a resolver answers.
"""

from truss_cli.controlplane.gateway.app import Gateway
from truss_cli.controlplane.gateway.metrics import GatewayMetrics
from truss_cli.controlplane.gateway.routes import (
    Authorizer,
    Denial,
    DeploymentRoute,
    NotReady,
    Parked,
    Replica,
    Resolution,
    Resolver,
    Route,
    UnknownTarget,
)
from truss_cli.controlplane.gateway.table import RoutingTable
from truss_cli.controlplane.gateway.upstream import Upstream

__all__ = [
    "Authorizer", "Denial", "DeploymentRoute", "Gateway", "GatewayMetrics", "NotReady", "Parked", "Replica",
    "Resolution", "Resolver", "Route", "RoutingTable", "UnknownTarget", "Upstream",
]
