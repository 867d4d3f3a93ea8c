"""`POST /v1/archives`: receive an archive, check its sha256, keep its files as blobs.

The body is streamed to a temporary file while hashing (an archive can be large), checked
against `X-Truss-Archive-Sha256`, and only then unpacked, as hostile input.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from truss_cli.controlplane.auth import require_admin
from truss_cli.controlplane.errors import ApiError
from truss_cli.controlplane.routes.views import plane_of

router = APIRouter(dependencies=[Depends(require_admin)])

MAX_ARCHIVE_BYTES = 2 << 30  # 2 GiB
SHA_HEADER = "x-truss-archive-sha256"


@router.post("/v1/archives", status_code=201)
async def upload(request: Request) -> Any:
    plane = plane_of(request)
    expected = (request.headers.get(SHA_HEADER) or "").strip().lower()
    if len(expected) != 64:
        raise ApiError(400, "MISSING_SHA256", "send the archive's sha256 in X-Truss-Archive-Sha256")
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_ARCHIVE_BYTES:
        raise ApiError(413, "TOO_LARGE", "the archive is larger than 2 GiB", {"limit": MAX_ARCHIVE_BYTES})
    tmp_dir = plane.store.data_dir / "tmp"
    tmp_dir.mkdir(parents=True, exist_ok=True)
    handle, path = tempfile.mkstemp(prefix="upload-", suffix=".tar.gz", dir=tmp_dir)
    try:
        digest, size = hashlib.sha256(), 0
        with os.fdopen(handle, "wb") as out:
            async for chunk in request.stream():
                size += len(chunk)
                if size > MAX_ARCHIVE_BYTES:
                    raise ApiError(413, "TOO_LARGE", "the archive is larger than 2 GiB", {"limit": MAX_ARCHIVE_BYTES})
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != expected:
            raise ApiError(400, "SHA256_MISMATCH", "the archive's sha256 does not match X-Truss-Archive-Sha256",
                           {"expected": expected, "received": digest.hexdigest()})
        received = await asyncio.to_thread(plane.trees.receive, Path(path))
    finally:
        os.unlink(path)
    return JSONResponse({"tree_hash": received.tree_hash, "files": received.files, "stored": received.stored},
                        status_code=201)
