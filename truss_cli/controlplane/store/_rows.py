"""Small helpers the tables' modules share: the clock, and rows to records."""

from __future__ import annotations

from dataclasses import fields
from datetime import datetime, timezone
from typing import Any, TypeVar

import sqlalchemy as sa

T = TypeVar("T")


def now() -> datetime:
    return datetime.now(timezone.utc)


def to_record(cls: type[T], row: sa.Row[Any]) -> T:
    """The record `cls` built from the same-named columns of `row`."""
    mapping = row._mapping
    return cls(**{f.name: mapping[f.name] for f in fields(cls)})  # type: ignore[arg-type]


def one_line(text: str | None, limit: int = 500) -> str | None:
    """A cause as the deployment object shows it: its first non-empty line, bounded."""
    if text is None:
        return None
    for line in text.splitlines():
        if line.strip():
            line = line.strip()
            return line if len(line) <= limit else line[: limit - 1] + "…"
    return None
