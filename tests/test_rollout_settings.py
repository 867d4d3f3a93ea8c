"""The settings objects of issue 11 (Baseten's field names): defaults, bounds, partial updates,
and the traffic split an environment publishes."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from truss_cli.controlplane import autoscaling_settings, promotion_settings
from truss_cli.controlplane.promotion_settings import CleanupStrategy, PromotionKind
from truss_cli.controlplane.traffic import environment_split


def test_autoscaling_defaults_are_basetens_and_a_partial_update_keeps_the_rest() -> None:
    defaults = autoscaling_settings.parse(None)
    assert (defaults.min_replica, defaults.max_replica, defaults.autoscaling_window, defaults.scale_down_delay,
            defaults.concurrency_target, defaults.target_utilization_percentage) == (0, 1, 60, 900, 1, 70)
    changed, moved = autoscaling_settings.updated({"scale_down_delay": 30}, {"max_replica": 4})
    assert moved and (changed.max_replica, changed.scale_down_delay) == (4, 30)
    same, moved = autoscaling_settings.updated(changed.model_dump(), {"max_replica": 4})
    assert not moved and same == changed


@pytest.mark.parametrize("changes, field", [
    ({"min_replica": 3, "max_replica": 2}, "max_replica (2) must be at least min_replica (3)"),
    ({"autoscaling_window": 5}, "autoscaling_window"),
    ({"scale_down_delay": 3601}, "scale_down_delay"),
    ({"max_scale_down_rate": 51}, "max_scale_down_rate"),
    ({"replicas": 2}, "replicas"),
])
def test_autoscaling_settings_out_of_bounds_name_the_field(changes: dict, field: str) -> None:
    with pytest.raises(ValidationError, match=field.replace("(", r"\(").replace(")", r"\)")):
        autoscaling_settings.updated(None, changes)


def test_an_environments_own_autoscaling_settings_win_over_the_deployments() -> None:
    assert autoscaling_settings.effective({"max_replica": 2}, {"max_replica": 5}).max_replica == 5
    assert autoscaling_settings.effective({"max_replica": 2}, None).max_replica == 2
    assert autoscaling_settings.effective(None, None).max_replica == 1


def test_promotion_settings_choose_the_kind_and_refuse_both_at_once() -> None:
    assert promotion_settings.parse(None).kind is PromotionKind.INSTANT
    assert promotion_settings.parse(None).promotion_cleanup_strategy is CleanupStrategy.SCALE_TO_ZERO
    assert promotion_settings.parse({"rolling_deploy": True}).kind is PromotionKind.ROLLING
    assert promotion_settings.parse({"ramp_up_while_promoting": True}).kind is PromotionKind.CANARY
    with pytest.raises(ValidationError, match="cannot both be on"):
        promotion_settings.parse({"rolling_deploy": True, "ramp_up_while_promoting": True})


def test_rolling_config_takes_exactly_one_of_surge_and_unavailable_and_updates_partially() -> None:
    with pytest.raises(ValidationError, match="exactly one of max_surge_percent and max_unavailable_percent"):
        promotion_settings.updated(None, {"rolling_deploy_config": {"max_unavailable_percent": 10}})
    settings, moved = promotion_settings.updated(
        {"rolling_deploy": True}, {"rolling_deploy_config": {"max_surge_percent": 0, "max_unavailable_percent": 20}})
    assert moved and settings.rolling_deploy and settings.rolling_deploy_config.max_unavailable_percent == 20
    assert settings.rolling_deploy_config.stabilization_time_seconds == 0


def test_the_split_follows_the_candidates_share() -> None:
    assert environment_split(None) == []
    assert environment_split("v1") == [("v1", 1.0)]
    assert environment_split("v1", "v2", "v1", 0) == [("v1", 1.0)]
    assert environment_split("v1", "v2", "v1", 30) == [("v1", 0.7), ("v2", 0.3)]
    assert environment_split("v1", "v2", "v1", 100) == [("v2", 1.0)]
    assert environment_split(None, "v2", None, 10) == [("v2", 1.0)]  # nothing to share with
