"""Invocation code a user pastes: the predict URL of a model's production deployment and of
each deployment, a Python snippet and a cURL line for each, with a placeholder key read from
the environment (`TRUSS_API_KEY`). Pure functions of ids and a base URL, shared by the API's
model view and the dashboard."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

KEY_VARIABLE = "TRUSS_API_KEY"


def production_url(base_url: str, model_id: str) -> str:
    return f"{base_url.rstrip('/')}/model-{model_id}/production/predict"


def deployment_url(base_url: str, model_id: str, deployment_id: str) -> str:
    return f"{base_url.rstrip('/')}/model-{model_id}/deployment/{deployment_id}/predict"


def environment_url(base_url: str, model_id: str, name: str) -> str:
    return f"{base_url.rstrip('/')}/model-{model_id}/environments/{name}/predict"


def development_url(base_url: str, model_id: str) -> str:
    """The model's development deployment (the one `truss push --watch` syncs), whichever it is."""
    return f"{base_url.rstrip('/')}/model-{model_id}/development/predict"


def python_snippet(url: str) -> str:
    return (
        "import os\n"
        "\n"
        "import requests\n"
        "\n"
        "response = requests.post(\n"
        f"    {json.dumps(url)},\n"
        f'    headers={{"Authorization": "Api-Key " + os.environ["{KEY_VARIABLE}"]}},\n'
        "    json={},  # the model's input\n"
        ")\n"
        "print(response.json())\n"
    )


def curl_line(url: str) -> str:
    # The Content-Type header: without it curl sends `-d` as a form (x-www-form-urlencoded),
    # which a model server that checks the type, or a proxy in front of it, would refuse.
    return (f"curl -X POST {url} -H \"Authorization: Api-Key ${KEY_VARIABLE}\" "
            f"-H \"Content-Type: application/json\" -d '{{}}'")


def snippets(url: str) -> dict[str, str]:
    return {"url": url, "python": python_snippet(url), "curl": curl_line(url)}


def invocation(base_url: str, model_id: str, deployments: Iterable[tuple[str, str]],
               environments: Iterable[str] = (),
               serving: Mapping[str, tuple[str, str]] | None = None) -> dict[str, Any]:
    """`deployments`: (id, name) of each deployment, in the order to show them; `environments`:
    the names of the model's environments other than production (which has its own entry);
    `serving`: environment name -> (id, name) of the deployment it serves (none: not there),
    each entry's `deployment` (null while the environment serves nothing yet)."""
    serving = serving or {}

    def served_by(name: str) -> dict[str, Any]:
        found = serving.get(name)
        return {"deployment": {"id": found[0], "name": found[1]} if found else None}

    return {
        "production": {**snippets(production_url(base_url, model_id)), **served_by("production")},
        "environments": [{"name": name, **snippets(environment_url(base_url, model_id, name)), **served_by(name)}
                         for name in environments if name != "production"],
        "deployments": [
            {"id": deployment_id, "name": name, **snippets(deployment_url(base_url, model_id, deployment_id))}
            for deployment_id, name in deployments
        ],
    }
