"""Baseten's `autoscaling_settings`: how many replicas a deployment runs and how fast that follows
the load (issue 11). One definition for the API, the CLI and the autoscaler.

Stored as JSON on a deployment (`deployments.autoscaling_settings`) and on an environment
(`environments.autoscaling_settings`, which applies to the deployment the environment serves);
null means the defaults. A PATCH updates some fields and leaves the others (`updated`).
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

__all__ = ["AutoscalingSettings", "ValidationError", "effective", "updated"]


class AutoscalingSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    min_replica: int = Field(0, ge=0, le=1000, description="replicas kept even with no load; 0 lets it scale to zero")
    max_replica: int = Field(1, ge=1, le=1000, description="the most replicas the autoscaler starts")
    autoscaling_window: int = Field(60, ge=10, le=3600, description="seconds of load averaged to decide")
    scale_down_delay: int = Field(900, ge=0, le=3600, description="seconds the load must stay low before scaling down")
    concurrency_target: int = Field(1, ge=1, le=10000, description="requests one replica serves at once; more queue")
    target_utilization_percentage: int = Field(70, ge=1, le=100, description="share of concurrency_target to aim at")
    # At most this share of the replicas is removed in one scale-down step (at least one).
    max_scale_down_rate: int = Field(50, ge=1, le=50, description="percent of replicas removed per scale-down step")

    @model_validator(mode="after")
    def _bounds(self) -> "AutoscalingSettings":
        if self.max_replica < self.min_replica:
            raise ValueError(f"max_replica ({self.max_replica}) must be at least min_replica ({self.min_replica})")
        return self


def parse(stored: Optional[Mapping[str, Any]]) -> AutoscalingSettings:
    """A stored JSON object (None: the defaults) as settings."""
    return AutoscalingSettings(**dict(stored or {}))


def updated(stored: Optional[Mapping[str, Any]], changes: Mapping[str, Any]) -> tuple[AutoscalingSettings, bool]:
    """`stored` with `changes` applied (a partial update) -> (settings, whether anything changed).
    ValidationError names the field and what it must be."""
    before = parse(stored)
    after = AutoscalingSettings(**{**before.model_dump(), **dict(changes)})
    return after, after != before


def effective(deployment_settings: Optional[Mapping[str, Any]],
              environment_settings: Optional[Mapping[str, Any]] = None) -> AutoscalingSettings:
    """What the autoscaler applies to a deployment: the settings of the environment it serves
    when that environment has its own, else the deployment's own, else the defaults."""
    return parse(environment_settings if environment_settings is not None else deployment_settings)
