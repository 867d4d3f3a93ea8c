"""The rollout calls of the management API (issue 11, task C): read an environment's
promotion and steer it. Kept out of client/api.py (task A adds the environment calls there);
they go through Api.request, so errors read the same as every other call's."""

from __future__ import annotations

from typing import Any
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
