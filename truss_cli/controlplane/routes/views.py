"""Store records as the API shows them (Baseten's shapes)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any, Optional

from fastapi import Request

from truss_cli.controlplane import autoscaling_settings, invocation, promotion_settings
from truss_cli.controlplane.plane import ControlPlane
from truss_cli.controlplane.store import Deployment, Model, NotFound, UsageTotal, states
from truss_cli.controlplane.store.environments import Environment, PromotionRow

CUSTOM = "Custom"


def plane_of(request: Request) -> ControlPlane:
    return request.app.state.plane


def base_url_of(request: Request) -> str:
    """The URL the request came in on: what a user reaches this control plane by."""
    return str(request.base_url).rstrip("/")


def status_label(status: str) -> str:
    return states.STATUS_LABELS.get(status, status.replace("_", " ").capitalize())


def _representative(deployments: Sequence[Deployment]) -> Optional[Deployment]:
    """The deployment a model's status, type and framework come from: production, else the newest."""
    production = next((d for d in deployments if d.is_production), None)
    return production or max(deployments, key=lambda d: d.ordinal, default=None)


def model_view(plane: ControlPlane, model: Model, deployments: Optional[Sequence[Deployment]] = None) -> dict[str, Any]:
    if deployments is None:
        deployments = plane.store.deployments.list(model.id)
    production = next((d for d in deployments if d.is_production), None)
    shown = _representative(deployments)
    metadata = dict((shown.config.get("model_metadata") or {}) if shown else {})
    return {
        "id": model.id, "name": model.name, "created_at": model.created_at.isoformat(),
        "deployments_count": len(deployments),
        "production_deployment_id": production.id if production else None,
        "production_deployment_name": production.name if production else None,
        "status": shown.status if shown else None,
        "description": model.description,
        "type": str(metadata.get("model_type") or CUSTOM),
        "framework": str(metadata.get("framework") or CUSTOM),
    }


def model_views(plane: ControlPlane, models: Sequence[Model]) -> list[dict[str, Any]]:
    """Many models with one read of the deployments."""
    by_model: defaultdict[str, list[Deployment]] = defaultdict(list)
    for deployment in plane.store.deployments.list():
        by_model[deployment.model_id].append(deployment)
    return [model_view(plane, model, by_model[model.id]) for model in models]


def model_detail(plane: ControlPlane, model: Model, base_url: str) -> dict[str, Any]:
    """GET /v1/models/{model}: the listing's fields, the README, the deployments and the code
    to call each."""
    deployments = plane.store.deployments.list(model.id)
    environments = plane.store.environments.list(model.id)
    names = {d.id: d.name for d in deployments}
    serving = {e.name: (e.current_deployment_id, names.get(e.current_deployment_id, e.current_deployment_id))
               for e in environments if e.current_deployment_id}
    return {
        **model_view(plane, model, deployments),
        "readme": model.readme,
        "deployments": [deployment_view(plane, d) for d in deployments],
        "environments": [e.name for e in environments],
        "invocation": invocation.invocation(base_url, model.id, [(d.id, d.name) for d in deployments],
                                            [e.name for e in environments], serving),
    }


def deployment_view(plane: ControlPlane, deployment: Deployment) -> dict[str, Any]:
    ready = sum(1 for r in plane.store.replicas.list(deployment.id) if r.phase == "ready")
    return {
        "id": deployment.id, "name": deployment.name, "model_id": deployment.model_id,
        "version": deployment.version,
        "status": deployment.status, "status_label": status_label(deployment.status),
        "status_detail": deployment.status_detail,
        "is_production": deployment.is_production, "is_primary": deployment.is_production,
        "is_development": deployment.is_development,
        "environment": deployment.environment or ("production" if deployment.is_production else None),
        "desired_state": deployment.desired_state, "replicas": deployment.desired_replicas,
        "active_replica_count": ready, "created_at": deployment.created_at.isoformat(),
        "updated_at": deployment.updated_at.isoformat(), "labels": dict(deployment.labels),
    }


def environment_view(plane: ControlPlane, environment: Environment,
                     promotion: Optional[PromotionRow] = None) -> dict[str, Any]:
    """Baseten's environment object. `autoscaling_settings` null: each deployment's own apply;
    `candidate_deployment` / `in_progress_promotion` null: no promotion under way."""
    settings = promotion_settings.parse(environment.promotion_settings)
    in_progress = None
    if promotion is not None and promotion.finished_at is None:
        in_progress = {"id": promotion.id, "status": promotion.status, "kind": promotion.kind,
                       "percent_traffic_to_new_version": promotion.percent_traffic_to_new_version,
                       "error_message": promotion.error_message,
                       "rolling_deploy": promotion.kind == promotion_settings.PromotionKind.ROLLING.value}
    return {
        "id": environment.id, "name": environment.name, "model_id": environment.model_id,
        "created_at": environment.created_at.isoformat(), "updated_at": environment.updated_at.isoformat(),
        "current_deployment": _deployment_or_none(plane, environment.current_deployment_id),
        "candidate_deployment": _deployment_or_none(plane, promotion.candidate_deployment_id) if in_progress else None,
        "in_progress_promotion": in_progress,
        "autoscaling_settings": (autoscaling_settings.parse(environment.autoscaling_settings).model_dump(mode="json")
                                 if environment.autoscaling_settings is not None else None),
        "promotion_settings": settings.model_dump(mode="json"),
    }


def _deployment_or_none(plane: ControlPlane, deployment_id: Optional[str]) -> Optional[dict[str, Any]]:
    if deployment_id is None:
        return None
    try:
        return deployment_view(plane, plane.store.deployments.get_by_id(deployment_id))
    except NotFound:  # deleted meanwhile
        return None


def usage_view(total: UsageTotal) -> dict[str, Any]:
    return {
        "model_id": total.model_id, "model_name": total.model_name,
        "deployment_id": total.deployment_id, "deployment_name": total.deployment_name,
        "replica_seconds": round(total.replica_seconds, 3), "requests": total.requests,
        "deleted": total.deleted, "deleted_at": total.deleted_at.isoformat() if total.deleted_at else None,
    }
