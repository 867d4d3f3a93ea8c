"""Jinja2 for the pages: autoescape always on (model names and descriptions are user text),
templates read once from the package's templates/ directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from starlette.responses import HTMLResponse

TEMPLATES = Path(__file__).parent / "templates"
HTMX = "vendor/htmx-2.0.11.min.js"
# What the pages may load: only this origin's files; no inline script or style (htmx's own
# injected indicator style is switched off by the htmx-config meta in base.html).
CONTENT_SECURITY_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                           "frame-ancestors 'none'; form-action 'self'; base-uri 'none'")

_environment = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(default=True),
                           undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def render(name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    html = _environment.get_template(name).render(htmx=HTMX, **context)
    return HTMLResponse(html, status_code=status_code, headers={
        "Content-Security-Policy": CONTENT_SECURITY_POLICY,
        "Cache-Control": "no-store",  # pages show live state, and a shared cache must never keep one
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
    })


def model_not_found(model_id: str, csrf_token: str) -> HTMLResponse:
    """The 404 of every model tab: pages look models up by id, and one may have been deleted."""
    return render("not_found.html", 404, what=f"No model has the id “{model_id}”: it may have been deleted.",
                  csrf_token=csrf_token, page="models")
