"""Pydantic-typed model inputs and outputs, with whichever pydantic the model runs on.

Truss supports models written for pydantic 1 and 2, and the server shares the model's
environment, so this is the one place that knows both APIs: pydantic 2 models
(`model_validate_json`, `model_json_schema`, `model_dump`), and pydantic 1 models, from
pydantic 1 itself or from `pydantic.v1` inside pydantic 2 (`parse_obj`, `schema`, `dict`).

The server never imports pydantic: a class can only be a pydantic model if the model's code
imported pydantic first, so the module is looked up in `sys.modules`. A model without typed
inputs does not pay pydantic's import time.
"""

from __future__ import annotations

import json
import sys
from typing import Any, Optional


class InvalidInput(ValueError):
    """Input that does not match the model's input type; `errors` as [{loc, msg, type}]."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__("; ".join(f"{_path(e['loc'])}: {e['msg']}" for e in errors))
        self.errors = errors

    def fields(self, whole: str) -> str:
        """`field.path: message; ...`, naming `whole` for an error about the value itself."""
        return "; ".join(f"{_path(e['loc']) or whole}: {e['msg']}" for e in self.errors)


class InvalidJSON(ValueError):
    """A body that is not JSON at all (a 400, not a 422)."""


def model_bases() -> tuple[type, ...]:
    """The pydantic BaseModel classes loaded in this process (none before pydantic is imported)."""
    pydantic = sys.modules.get("pydantic")
    if pydantic is None:
        return ()
    bases = [pydantic.BaseModel]
    v1 = sys.modules.get("pydantic.v1")
    v1_base = getattr(v1, "BaseModel", None)
    if v1_base is not None and v1_base is not pydantic.BaseModel:
        bases.append(v1_base)
    return tuple(bases)


def is_model_class(value: Any) -> bool:
    bases = model_bases()
    return bool(bases) and isinstance(value, type) and issubclass(value, bases)


def is_model_instance(value: Any) -> bool:
    bases = model_bases()
    return bool(bases) and isinstance(value, bases)


def _is_v2(cls: type) -> bool:
    # pydantic 2's BaseModel has model_validate_json; pydantic 1's (and pydantic.v1's) does not.
    return hasattr(cls, "model_validate_json")


def validate_json(cls: type, body: bytes) -> Any:
    """An instance of `cls` from a JSON body; InvalidJSON or InvalidInput if it is not one."""
    if _is_v2(cls):
        try:
            return cls.model_validate_json(body)  # type: ignore[attr-defined]
        except ValueError as exc:
            errors = _errors(exc)
            if any(error["type"] == "json_invalid" for error in errors):
                raise InvalidJSON(errors[0]["msg"]) from None
            raise InvalidInput(errors) from None
    try:
        value = json.loads(body)
    except ValueError as exc:
        raise InvalidJSON(str(exc)) from None
    return validate_python(cls, value)


def validate_python(cls: type, value: Any) -> Any:
    """An instance of `cls` from a Python value (decoded msgpack, a model's output)."""
    try:
        if _is_v2(cls):
            return cls.model_validate(value)  # type: ignore[attr-defined]
        return cls.parse_obj(value)  # type: ignore[attr-defined]
    except ValueError as exc:
        raise InvalidInput(_errors(exc)) from None


def json_schema(cls: type) -> dict[str, Any]:
    if _is_v2(cls):
        return cls.model_json_schema()  # type: ignore[attr-defined]
    return cls.schema()  # type: ignore[attr-defined]


def dump(instance: Any, for_json: bool) -> Any:
    """A pydantic model instance as plain data: JSON-safe values, or Python ones for msgpack."""
    if hasattr(instance, "model_dump"):
        return instance.model_dump(mode="json" if for_json else "python")
    if for_json:
        # pydantic 1 knows how to encode its own field types (datetimes, UUIDs, ...) only in .json().
        return json.loads(instance.json())
    return instance.dict()


def _errors(exc: ValueError) -> list[dict[str, Any]]:
    errors = getattr(exc, "errors", None)
    if not callable(errors):
        raise exc  # a ValueError that is not a validation error: a bug, let it show
    try:
        listed = errors(include_url=False, include_context=False, include_input=False)  # pydantic 2
    except TypeError:
        listed = errors()  # pydantic 1
    return [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")} for e in listed]


def _path(loc: Optional[list]) -> str:
    # pydantic 1 names a whole-value error `__root__`.
    return ".".join(str(part) for part in loc or () if part != "__root__")
