"""Where the files shipped beside the code live: `templates/`, and the replica-side sources;
and the one way templates are rendered."""

from __future__ import annotations

import json
import shlex
from functools import lru_cache
from pathlib import Path
from typing import Any

_PACKAGE_DIR = Path(__file__).resolve().parent


def templates_dir() -> Path:
    """`templates/` from a wheel (copied into the package) or from a source checkout."""
    packaged = _PACKAGE_DIR / "_templates"
    if packaged.is_dir():
        return packaged
    return _PACKAGE_DIR.parent / "templates"


def package_dir() -> Path:
    return _PACKAGE_DIR


def render_template(relative_name: str, **variables: Any) -> str:
    """Render `templates/<relative_name>` (posix path) with `variables`.

    Undefined variables are errors (a typo must not render as an empty string); blocks trim
    their own newline; nothing is HTML-escaped. Filters for the formats the templates write:
    `shell_quote` (a POSIX shell word), `docker_string` (a double-quoted Dockerfile ENV/LABEL
    value), `exec_form` (a JSON array, as in `RUN ["sh", "-c", ...]`), `yaml_string` (a JSON
    string, which is also a valid YAML scalar).
    """
    return _environment().get_template(relative_name).render(**variables)


@lru_cache(maxsize=1)
def _environment() -> Any:
    # Imported here: most commands render nothing and need not pay for loading Jinja2.
    import jinja2

    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    environment.filters["shell_quote"] = shlex.quote
    environment.filters["docker_string"] = _docker_string
    environment.filters["exec_form"] = json.dumps
    environment.filters["yaml_string"] = lambda value: json.dumps(str(value), ensure_ascii=False)
    return environment


def _docker_string(value: str) -> str:
    """A double-quoted string for ENV/LABEL lines (JSON escaping is what Docker parses; `$`
    is escaped so Docker does not substitute variables into it)."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("$", "\\$")
    return f'"{escaped}"'
