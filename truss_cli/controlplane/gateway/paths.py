"""Baseten's inference paths -> (model id, target, the replica's path).

    /model-{id}/production/predict            -> production,        /v1/models/model:predict
    /model-{id}/development/predict           -> development,       ...
    /model-{id}/deployment/{dep}/predict      -> deployment/{dep},  ...
    /model-{id}/environments/{name}/predict   -> environments/{name}, ...
    /model-{id}/{target}/sync/{path}          -> {target},          /{path}  (any route of the replica)
    /model-{id}/{target}/wake                 -> WakePath: the gateway answers 202 itself (scale to zero)

The same paths without `/model-{id}` when the Host header is `model-{id}.<anything>`, as
Baseten's per-model hostnames are. Parsed with string methods: this runs on every request.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

from truss_cli.server.protocol import PREDICT_PATH

_MODEL_PREFIX = "/model-"
_TARGETS_WITH_NAME = ("deployment", "environments")
_TARGETS_ALONE = ("production", "development")

PATH_FORMS = (
    "/model-{model_id}/production/predict, /model-{model_id}/development/predict, "
    "/model-{model_id}/deployment/{deployment_id}/predict, /model-{model_id}/environments/{name}/predict, "
    "/model-{model_id}/{target}/sync/{path}, or POST /model-{model_id}/{target}/wake"
)


@dataclass(frozen=True)
class GatewayPath:
    model_id: str
    target: str  # production | development | deployment/<id> | environments/<name>
    upstream_path: str  # the replica's path


@dataclass(frozen=True)
class WakePath:
    """`POST .../wake`: wake the target if it is scaled to zero and reset its idle clock."""

    model_id: str
    target: str


@dataclass(frozen=True)
class BadPath:
    detail: str


def parse(path: str, host: Optional[bytes]) -> Union[GatewayPath, WakePath, BadPath]:
    """`host` is the Host header (None when absent); only read when the path has no model prefix."""
    if path.startswith(_MODEL_PREFIX):
        end = path.find("/", len(_MODEL_PREFIX))
        if end < 0:
            return BadPath(f"{path} names a model but no target; use {PATH_FORMS}")
        model_id, rest = path[len(_MODEL_PREFIX) : end], path[end:]
    else:
        model_id = _model_from_host(host)
        if model_id is None:
            return BadPath(f"{path} is not an inference path; use {PATH_FORMS}, or a model-{{model_id}}.* host")
        rest = path
    if not model_id:
        return BadPath(f"{path}: the model id is empty")
    return _parse_target(model_id, rest, path)


def _model_from_host(host: Optional[bytes]) -> Optional[str]:
    if not host or not host.startswith(b"model-"):
        return None
    label = host.split(b".", 1)[0].split(b":", 1)[0]
    return label[len(b"model-") :].decode("latin-1")


def _parse_target(model_id: str, rest: str, path: str) -> Union[GatewayPath, WakePath, BadPath]:
    # rest: "/production/predict", "/deployment/abc/sync/v1/chat/completions", ...
    parts = rest.split("/", 3)  # ["", kind, name-or-action, tail]
    kind = parts[1] if len(parts) > 1 else ""
    if kind in _TARGETS_ALONE:
        target, after = kind, rest[len(kind) + 1 :]
    elif kind in _TARGETS_WITH_NAME and len(parts) > 2 and parts[2]:
        target = f"{kind}/{parts[2]}"
        after = rest[len(target) + 1 :]
    else:
        return BadPath(f"{path}: unknown target {kind!r}; use {PATH_FORMS}")
    if after == "/predict":
        return GatewayPath(model_id, target, PREDICT_PATH)
    if after.startswith("/sync/"):
        return GatewayPath(model_id, target, after[len("/sync") :])
    if after == "/sync":
        return GatewayPath(model_id, target, "/")
    if after == "/wake":
        return WakePath(model_id, target)
    return BadPath(f"{path}: no such action for target {target!r}; use {PATH_FORMS}")
