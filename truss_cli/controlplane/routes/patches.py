"""`/v1/models/{model}/deployments/{development}/patches`: stage a patch (an envelope), read
the patch points, sync the staged tree into the replica (docs/live-reload.md).

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

from truss_cli.controlplane.auth import require_admin
from truss_cli.controlplane.errors import ApiError
from truss_cli.controlplane.patches import MAX_ENVELOPE_BYTES, stage, state_of
from truss_cli.controlplane.plane import ControlPlane
from truss_cli.controlplane.routes.views import plane_of
from truss_cli.controlplane.store import Deployment

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
    return JSONResponse({**body, "patch_point": patch_point}, status_code=status, headers=headers)


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
    deployment = await asyncio.to_thread(_development, plane, model_ref, deployment_ref)
    status, body, headers = await _sync(plane, deployment.id)
    return JSONResponse(body, status_code=status, headers=headers)


async def _sync(plane: ControlPlane, deployment_id: str) -> tuple[int, dict[str, Any], dict[str, str]]:
    status, body, headers = await plane.syncer.sync(deployment_id)
    if body.get("action") == "rebuild":
        plane.builds.wake()
        await plane.reconciler.refresh()  # the rebuilt one stops routing to its old replica now
    return status, body, headers


def _too_large() -> ApiError:
    return ApiError(413, "TOO_LARGE", "the envelope is larger than 4 GiB: send large files as blobs first "
                    "(POST /v1/blobs/missing tells which)", {"limit": MAX_ENVELOPE_BYTES})
