"""Store records as the API shows them (Baseten's shapes)."""

from __future__ import annotations

from typing import Any

from fastapi import Request

from truss_cli.controlplane.plane import ControlPlane
from truss_cli.controlplane.store import Deployment, Model


def plane_of(request: Request) -> ControlPlane:
    return request.app.state.plane


def model_view(plane: ControlPlane, model: Model) -> dict[str, Any]:
    deployments = plane.store.deployments.list(model.id)
    production = next((d.id for d in deployments if d.is_production), None)
    return {"id": model.id, "name": model.name, "created_at": model.created_at.isoformat(),
            "deployments_count": len(deployments), "production_deployment_id": production}


def deployment_view(plane: ControlPlane, deployment: Deployment) -> dict[str, Any]:
    ready = sum(1 for r in plane.store.replicas.list(deployment.id) if r.phase == "ready")
    return {
        "id": deployment.id, "name": deployment.name, "model_id": deployment.model_id,
        "status": deployment.status, "status_detail": deployment.status_detail,
        "is_production": deployment.is_production, "is_development": deployment.is_development,
        "environment": deployment.environment or ("production" if deployment.is_production else None),
        "active_replica_count": ready, "created_at": deployment.created_at.isoformat(),
        "labels": dict(deployment.labels),
    }
