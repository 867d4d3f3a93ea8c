"""`/v1/models/{model}/deployments/{development}/patches`: stage a patch (an envelope), read
the patch points, sync the staged tree into the replica, and read the last syncs
(`.../patches/history`, docs/live-reload.md).

Each sync that moved or tried to move the code is recorded here, where its answer is known
(store/dev_syncs.py): after the answer is sent (a background task), so the row never delays
a save reaching the client.

`{deployment}` is `development` or the development deployment's id; any other deployment
answers 409 NOT_DEVELOPMENT. The envelope is streamed to a temporary file under a size
limit before it is read: it is hostile input until `read_envelope` and `Patch.apply_to` agree.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from starlette.background import BackgroundTask

from truss_cli.controlplane.auth import require_admin
from truss_cli.controlplane.errors import ApiError
from truss_cli.controlplane.patches import MAX_ENVELOPE_BYTES, stage, state_of
from truss_cli.controlplane.plane import ControlPlane
from truss_cli.controlplane.routes.views import plane_of
from truss_cli.controlplane.store import Deployment, NotFound
from truss_cli.controlplane.store.dev_syncs import KEEP, changes_between

router = APIRouter(dependencies=[Depends(require_admin)])

PREFIX = "/v1/models/{model_ref}/deployments/{deployment_ref}/patches"


def _development(plane: ControlPlane, model_ref: str, deployment_ref: str) -> Deployment:
    model = plane.store.models.get(model_ref)
    deployment = plane.store.deployments.get(model.id, deployment_ref)
    if not deployment.is_development:
        raise ApiError(409, "NOT_DEVELOPMENT", "patches apply to the development deployment only",
                       {"deployment": deployment.name, "hint": "truss push --watch creates the development deployment"})
    return deployment


@router.post(PREFIX)
async def post_patch(request: Request, model_ref: str, deployment_ref: str, sync: bool = False) -> JSONResponse:
    plane = plane_of(request)
    deployment = await asyncio.to_thread(_development, plane, model_ref, deployment_ref)
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_ENVELOPE_BYTES:
        raise _too_large()
    received = time.perf_counter()
    tmp_dir = plane.store.data_dir / "tmp"
    tmp_dir.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix="envelope-", suffix=".tar", dir=tmp_dir)
    try:
        size = 0
        with os.fdopen(handle, "wb") as out:
            async for chunk in request.stream():
                size += len(chunk)
                if size > MAX_ENVELOPE_BYTES:
                    raise _too_large()
                out.write(chunk)
        staged, patch = await asyncio.to_thread(stage, plane.store, plane.trees, deployment, Path(name))
    finally:
        os.unlink(name)
    plane.syncer.hot_reload[staged.id] = patch.hot_reload
    patch_point = {"hash": staged.current_tree, "seq": staged.patch_seq}
    if not sync:
        return JSONResponse({"patch_point": patch_point}, status_code=201)
    staged_ms = round((time.perf_counter() - received) * 1000, 1)
    status, body, headers = await _sync(plane, staged.id)
    if isinstance(body.get("ms"), dict):
        body["ms"]["stage"] = staged_ms  # the body read + stage, before the sync's own `total`
    record = _recorder(plane, staged.id, staged.running_tree, staged.current_tree, status, body, received)
    return JSONResponse({**body, "patch_point": patch_point}, status_code=status, headers=headers, background=record)


@router.get(PREFIX + "/state")
async def patch_state(request: Request, model_ref: str, deployment_ref: str, manifest: bool = False) -> dict[str, Any]:
    plane = plane_of(request)
    deployment = await asyncio.to_thread(_development, plane, model_ref, deployment_ref)
    answer = state_of(deployment)
    if manifest:
        current = await asyncio.to_thread(plane.trees.manifest, deployment.current_tree or "")
        answer["manifest"] = {} if current is None else {
            path: {"sha256": entry.sha256, "mode": entry.mode} for path, entry in current.items()
        }
    return answer


@router.post(PREFIX + "/sync")
async def sync_patches(request: Request, model_ref: str, deployment_ref: str) -> JSONResponse:
    plane = plane_of(request)
    asked = time.perf_counter()
    deployment = await asyncio.to_thread(_development, plane, model_ref, deployment_ref)
    status, body, headers = await _sync(plane, deployment.id)
    record = _recorder(plane, deployment.id, deployment.running_tree, None, status, body, asked)
    return JSONResponse(body, status_code=status, headers=headers, background=record)


@router.get(PREFIX + "/history")
async def patch_history(request: Request, model_ref: str, deployment_ref: str, limit: int = KEEP) -> dict[str, Any]:
    """The development deployment's last syncs, newest first (the store keeps KEEP)."""
    if not 1 <= limit <= KEEP:
        raise ApiError(400, "BAD_LIMIT", f"limit must be between 1 and {KEEP} (the store keeps the last {KEEP} syncs)",
                       {"limit": limit})
    plane = plane_of(request)
    deployment = await asyncio.to_thread(_development, plane, model_ref, deployment_ref)
    syncs = await asyncio.to_thread(plane.store.dev_syncs.recent, deployment.id, limit)
    return {"deployment_id": deployment.id, **state_of(deployment), "syncs": [s.to_dict() for s in syncs]}


# What a sync answer's `action` is recorded as: the code moved (or will at the next start), or
# a rebuild began. `none` (nothing staged, nothing changed) is not a sync worth a row.
_RECORDED = frozenset({"hot_swap", "restart", "requirements", "rebuild", "deferred"})


def _recorder(plane: ControlPlane, deployment_id: str, from_tree: str | None, staged_tree: str | None, status: int,
              body: dict[str, Any], started: float) -> BackgroundTask | None:
    """The task that records this sync once its answer is sent, or None when there is
    nothing to record: `none`, and a 503 (the client retries; its retry is recorded).
    `staged_tree`: the tree the sync tried, when the caller knows it (None: the staged one)."""
    ms = round((time.perf_counter() - started) * 1000, 1)
    action, error = body.get("action"), None
    if status == 200 and action in _RECORDED:
        to_tree = body.get("tree_hash")
    elif status in (422, 502):
        action, error = "failed", _failure_text(body)
        to_tree = staged_tree
    else:
        return None
    return BackgroundTask(_record, plane, deployment_id, from_tree, to_tree, str(action), body.get("reason"), ms, error)


def _record(plane: ControlPlane, deployment_id: str, from_tree: str | None, to_tree: str | None, action: str,
            reason: str | None, ms: float, error: str | None) -> None:
    try:
        _keep(plane, deployment_id, from_tree, to_tree, action, reason, ms, error)
    except NotFound:
        pass  # the deployment was deleted since its answer: nothing to show a sync on


def _keep(plane: ControlPlane, deployment_id: str, from_tree: str | None, to_tree: str | None, action: str,
          reason: str | None, ms: float, error: str | None) -> None:
    if to_tree is None:  # a failed /sync: the tree it tried is the staged one (read here, off the loop)
        to_tree = plane.store.deployments.get_by_id(deployment_id).pending_tree_hash
        if to_tree is None:
            return
    old = plane.trees.manifest(from_tree) if from_tree else None
    new = plane.trees.manifest(to_tree)
    changes = changes_between(old or {}, new or {}) if new is not None else {}
    plane.store.dev_syncs.record(deployment_id, from_tree=from_tree, to_tree=to_tree, changes=changes,
                                 action=action, reason=reason or None, ms=ms, error=error)


def _failure_text(body: dict[str, Any]) -> str:
    """A failed sync's error as a person reads it: the replica's summary (e.g. the SyntaxError),
    with the phase that failed."""
    detail = body.get("detail") if isinstance(body.get("detail"), dict) else {}
    summary = detail.get("summary") or body.get("error") or "the sync failed"
    phase = str(detail.get("phase") or "")
    summary = str(summary)
    return summary if not phase or summary.lower().startswith(phase) else f"{phase}: {summary}"


async def _sync(plane: ControlPlane, deployment_id: str) -> tuple[int, dict[str, Any], dict[str, str]]:
    status, body, headers = await plane.syncer.sync(deployment_id)
    if body.get("action") == "rebuild":
        plane.builds.wake()
        await plane.reconciler.refresh()  # the rebuilt one stops routing to its old replica now
    return status, body, headers


def _too_large() -> ApiError:
    return ApiError(413, "TOO_LARGE", "the envelope is larger than 4 GiB: send large files as blobs first "
                    "(POST /v1/blobs/missing tells which)", {"limit": MAX_ENVELOPE_BYTES})
