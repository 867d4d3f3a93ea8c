"""The rollout calls of the management API (issue 11, task C): read an environment's
promotion and steer it. Kept out of client/api.py (task A adds the environment calls there);
they go through Api.request, so errors read the same as every other call's."""

from __future__ import annotations

import time
from typing import Any, Optional
from urllib.parse import quote

from truss_cli.client.api import Api

# The CLI's words -> the API's.
CONTROLS = {
    "pause": "pause_promotion",
    "resume": "resume_promotion",
    "cancel": "cancel_promotion",
    "force-cancel": "force_cancel_promotion",
    "force-roll-forward": "force_roll_forward_promotion",
}


def _environment_path(model_ref: str, environment: str) -> str:
    return f"/v1/models/{quote(model_ref, safe='')}/environments/{quote(environment, safe='')}"


def promotion(api: Api, model_ref: str, environment: str) -> dict[str, Any]:
    """{"model_id", "environment", "current_deployment_id", "promotion": the one in progress,
    else the last one, else null}."""
    return api.request("GET", _environment_path(model_ref, environment) + "/promotion")


def control(api: Api, model_ref: str, environment: str, word: str) -> dict[str, Any]:
    """{"status", "message", "promotion"}; `word` is one of CONTROLS."""
    return api.request("POST", _environment_path(model_ref, environment) + "/" + CONTROLS[word])


def after_active(api: Api, model_ref: str, environment: str, deployment_id: str,
                 timeout_seconds: float = 15.0) -> Optional[dict[str, Any]]:
    """What became of a deployment pushed into `environment` (`truss push --environment` /
    `--promote`) once it is ACTIVE. The control plane promotes it in the tick that makes it
    ACTIVE, just after writing ACTIVE, so this looks a few times: the promotion body (as
    `promotion()`) once the environment serves it (an instant promotion) or a promotion of it
    has begun (rolling, canary); None if neither happened in time (its log says why)."""
    deadline = time.monotonic() + timeout_seconds
    while True:
        body = promotion(api, model_ref, environment)
        begun = body.get("promotion") or {}
        if (body.get("current_deployment_id") == deployment_id
                or (begun.get("candidate_deployment") or {}).get("id") == deployment_id):
            return body
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.2)
