"""docs/truss-compatibility.md against the code: every key config.py reads is listed, every
key unsupported_keys.py refuses is marked refused, and every route the server serves is there."""

from __future__ import annotations

import re
import typing
from typing import Any, Iterator

import pydantic

from conftest import REPO_ROOT
from truss_cli.config import TrussConfig
from truss_cli.server.protocol import ENDPOINT_PATHS, METRICS_PATH, STATUS_PATH, WEBSOCKET_PATH
from truss_cli.unsupported_keys import UNSUPPORTED_KEYS

DOC = (REPO_ROOT / "docs" / "truss-compatibility.md").read_text()


def _rows() -> dict[str, str]:
    """Each table row's first cell (a key or a route) -> the row's status cell."""
    rows = {}
    for line in DOC.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("|") and len(cells) >= 2:
            for name in re.findall(r"`([^`]+)`", cells[0]):
                rows.setdefault(name, cells[1])
    return rows


def _section_model(annotation: Any) -> tuple[type[pydantic.BaseModel] | None, bool]:
    """The pydantic section inside an annotation such as Optional[list[Section]], and whether it is a list."""
    is_list = False
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Union:
            annotation = next(arg for arg in typing.get_args(annotation) if arg is not type(None))
        elif origin is list:
            is_list, annotation = True, typing.get_args(annotation)[0]
        else:
            break
    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        return annotation, is_list
    return None, is_list


def _config_keys(model: type[pydantic.BaseModel] = TrussConfig, prefix: str = "") -> Iterator[str]:
    for name, info in model.model_fields.items():
        key = f"{prefix}{name}"
        yield key
        section, is_list = _section_model(info.annotation)
        if section is not None:
            yield from _config_keys(section, f"{key}[]." if is_list else f"{key}.")


def test_every_key_config_py_reads_is_in_the_table() -> None:
    rows = _rows()
    missing = [key for key in _config_keys() if key not in rows]
    assert missing == [], f"docs/truss-compatibility.md does not list: {', '.join(missing)}"


def test_every_refused_key_is_marked_refused() -> None:
    rows = _rows()
    for entry in UNSUPPORTED_KEYS:
        # A key refused only for one value (grpc, TRT_LLM, node_count > 1) has the row of its key.
        assert entry.key in rows, entry.key
        if rows[entry.key] != "refused":
            assert "refused" in DOC.split(f"`{entry.key}`", 1)[1].split("\n", 1)[0], entry.key


def test_no_row_marks_refused_a_key_that_is_not_refused() -> None:
    refused_keys = {entry.key for entry in UNSUPPORTED_KEYS}
    rows = _rows()
    # Nested keys of refused sections are refused with their section.
    wrongly = [
        key for key, status in rows.items()
        if status == "refused" and key not in refused_keys and key != "hf_cache"
        and not any(key.startswith((f"{refused}[]", f"{refused}.")) for refused in refused_keys)
    ]
    assert wrongly == []


def test_every_route_the_server_serves_is_in_the_table() -> None:
    routes = [
        "GET /",
        "GET /v1/models/{model_name}",
        "GET /v1/models/{model_name}/loaded",
        "GET /v1/models/{model_name}/schema",
        "POST /v1/models/{model_name}:predict",
        "POST /v1/models/{model_name}:predict_binary",
        f"WS {WEBSOCKET_PATH}",
        "GET /ping",
        "POST /invocations",
        f"GET {METRICS_PATH}",
        f"GET {STATUS_PATH}",
        *(f"POST {path}" for path in ENDPOINT_PATHS),
    ]
    rows = _rows()
    assert [route for route in routes if route not in rows] == []
