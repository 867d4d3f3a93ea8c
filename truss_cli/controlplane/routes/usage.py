"""`GET /v1/usage`: replica-seconds and requests per deployment, deleted ones included (marked)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from typing import Any, Optional

from fastapi import APIRouter, Depends, Request

from truss_cli.controlplane.auth import require_admin
from truss_cli.controlplane.errors import ApiError
from truss_cli.controlplane.routes.views import plane_of, usage_view

router = APIRouter(dependencies=[Depends(require_admin)])


def parse_since(text: Optional[str]) -> Optional[datetime]:
    """An ISO 8601 date (midnight UTC) or date and time (UTC unless it says otherwise)."""
    if not text:
        return None
    try:
        parsed = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ApiError(400, "BAD_SINCE", f"since={text!r}: give an ISO 8601 date or time",
                       "e.g. 2024-05-01 or 2024-05-01T12:00:00Z") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


@router.get("/v1/usage")
async def usage(request: Request, model: Optional[str] = None, since: Optional[str] = None) -> dict[str, Any]:
    start = parse_since(since)
    totals = await asyncio.to_thread(plane_of(request).store.usage.totals, model, start)
    return {"usage": [usage_view(total) for total in totals], "since": start.isoformat() if start else None}
