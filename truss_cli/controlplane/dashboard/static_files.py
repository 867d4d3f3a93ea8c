"""The dashboard's own CSS/JS and the vendored htmx, from the package (no CDN at run time).

Served without a session: they are the same public files for everyone and hold no data. The
vendored files have their version in the name, so they may be cached for a year; our own
files change with the code, so browsers revalidate them.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from starlette.responses import FileResponse, Response

STATIC = Path(__file__).parent / "static"
router = APIRouter(include_in_schema=False)
_TYPES = {".js": "text/javascript", ".css": "text/css", ".json": "application/json"}


@router.get("/static/{name:path}")
async def static_file(name: str) -> Response:
    path = (STATIC / name).resolve()
    if not path.is_relative_to(STATIC.resolve()) or not path.is_file() or path.suffix not in _TYPES:
        return Response("not found", status_code=404, media_type="text/plain")
    cache = "public, max-age=31536000, immutable" if name.startswith("vendor/") else "no-cache"
    return FileResponse(path, media_type=_TYPES[path.suffix],
                        headers={"Cache-Control": cache, "X-Content-Type-Options": "nosniff"})
