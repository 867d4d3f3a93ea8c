"""Baseten's `promotion_settings` of an environment: how a deployment promoted into it takes
over (issue 11). One definition for the API, the CLI and the rollout.

- instant (neither `rolling_deploy` nor `ramp_up_while_promoting`): all traffic moves once
  the candidate is ready;
- rolling (`rolling_deploy` + `rolling_deploy_config`): scale the candidate up by a step, move
  traffic in proportion to ready replicas, wait `stabilization_time_seconds`, scale the
  previous down by the same step; steps advance on ready capacity;
- canary (`ramp_up_while_promoting`, deprecated): traffic moves in 10 equal stages over
  `ramp_up_duration_seconds` once the candidate has the previous deployment's min replicas.
The previous deployment is then handled by `promotion_cleanup_strategy`.
"""

from __future__ import annotations

from enum import Enum
from typing import Any, Mapping, Optional

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["CleanupStrategy", "PromotionKind", "PromotionSettings", "RollingDeployConfig", "parse", "updated"]


class CleanupStrategy(str, Enum):
    SCALE_TO_ZERO = "SCALE_TO_ZERO"
    KEEP = "KEEP"
    DEACTIVATE = "DEACTIVATE"


class PromotionKind(str, Enum):
    INSTANT = "instant"
    ROLLING = "rolling"
    CANARY = "canary"


class RollingDeployConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    max_surge_percent: int = Field(10, ge=0, le=50, description="extra candidate replicas per step, percent of the target")
    max_unavailable_percent: int = Field(0, ge=0, le=50, description="previous replicas removed before the candidate's are ready, percent")
    stabilization_time_seconds: int = Field(0, ge=0, le=3600, description="wait after each traffic shift")
    replica_overhead_percent: int = Field(0, ge=0, le=500, description="extra candidate capacity kept during the rollout")

    @model_validator(mode="after")
    def _one_of_surge_or_unavailable(self) -> "RollingDeployConfig":
        if (self.max_surge_percent == 0) == (self.max_unavailable_percent == 0):
            raise ValueError("exactly one of max_surge_percent and max_unavailable_percent must be non-zero "
                             f"(got {self.max_surge_percent} and {self.max_unavailable_percent})")
        return self


class PromotionSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    promotion_cleanup_strategy: CleanupStrategy = CleanupStrategy.SCALE_TO_ZERO
    rolling_deploy: bool = False
    rolling_deploy_config: RollingDeployConfig = RollingDeployConfig()
    ramp_up_while_promoting: bool = False  # canary: deprecated, still supported
    ramp_up_duration_seconds: int = Field(600, ge=10, le=86400)

    @model_validator(mode="after")
    def _not_both(self) -> "PromotionSettings":
        if self.rolling_deploy and self.ramp_up_while_promoting:
            raise ValueError("rolling_deploy and ramp_up_while_promoting (canary) cannot both be on: choose one")
        return self

    @property
    def kind(self) -> PromotionKind:
        if self.rolling_deploy:
            return PromotionKind.ROLLING
        if self.ramp_up_while_promoting:
            return PromotionKind.CANARY
        return PromotionKind.INSTANT


def parse(stored: Optional[Mapping[str, Any]]) -> PromotionSettings:
    return PromotionSettings(**dict(stored or {}))


def updated(stored: Optional[Mapping[str, Any]], changes: Mapping[str, Any]) -> tuple[PromotionSettings, bool]:
    """A partial update; `rolling_deploy_config` is itself updated partially."""
    before = parse(stored)
    merged = before.model_dump(mode="json")
    for key, value in dict(changes).items():
        if key == "rolling_deploy_config" and isinstance(value, Mapping):
            merged[key] = {**merged[key], **dict(value)}
        else:
            merged[key] = value
    after = PromotionSettings(**merged)
    return after, after != before
