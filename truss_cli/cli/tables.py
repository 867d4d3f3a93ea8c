"""Tables for listings, sized to the terminal (80 columns off one), and the words in them.

rich shrinks and wraps columns to the console's width, but only when the table is printed
with wrapping on: `out` soft-wraps off a terminal (so messages stay one line in a log),
which would let a table run past 80 columns. `print_table` always wraps.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Iterable, Sequence

from rich.table import Table
from rich.text import Text

from truss_cli.cli import console

Column = tuple[str, dict[str, Any]]


def table(*columns: str | Column) -> Table:
    """A borderless table (columns two spaces apart, as `docker ps` prints them); a column is
    a heading or (heading, options). Long words in a cell are folded onto the next line,
    never cut off with an ellipsis: a name must stay readable and copyable."""
    grid = Table(box=None, padding=(0, 1), pad_edge=False, header_style="bold", highlight=False)
    for column in columns:
        heading, options = (column, {}) if isinstance(column, str) else column
        grid.add_column(heading, **{"overflow": "fold", **options})
    return grid


def add_row(grid: Table, cells: Iterable[Any]) -> None:
    # Cells are user text (names, labels): never rich markup.
    grid.add_row(*(cell if isinstance(cell, Text) else Text(str(cell)) for cell in cells))


def print_table(grid: Table) -> None:
    console.out.print(grid, soft_wrap=False, crop=True)


def print_rows(headings: Sequence[str | Column], rows: Iterable[Sequence[Any]]) -> None:
    grid = table(*headings)
    for row in rows:
        add_row(grid, row)
    print_table(grid)


def age(iso: str | None, now: datetime | None = None) -> str:
    """How long ago, as `kubectl` says it: `42s`, `12m`, `3h`, `5d`, `4mo`, `2y`; `-` when unknown."""
    when = parse_time(iso)
    if when is None:
        return "-"
    seconds = max(0, int(((now or datetime.now(timezone.utc)) - when).total_seconds()))
    for unit, size in (("y", 365 * 86400), ("mo", 30 * 86400), ("d", 86400), ("h", 3600), ("m", 60)):
        # Two units' worth before switching to the larger one: 36h says more than 1d.
        if seconds >= size * (1 if unit in ("y", "mo") else 2) or (unit == "m" and seconds >= 60):
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def ago(iso: str | None, now: datetime | None = None) -> str:
    """`3h ago` (or `-`), for prose."""
    text = age(iso, now)
    return text if text == "-" else f"{text} ago"


def parse_time(iso: str | None) -> datetime | None:
    if not iso:
        return None
    try:
        when = datetime.fromisoformat(str(iso).replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def duration(seconds: float | None) -> str:
    """Replica time for people: `42s`, `3m 05s`, `2h 07m`, `3d 04h`."""
    if seconds is None:
        return "-"
    total = int(round(seconds))
    if total < 60:
        return f"{total}s"
    if total < 3600:
        return f"{total // 60}m {total % 60:02d}s"
    if total < 86400:
        return f"{total // 3600}h {total % 3600 // 60:02d}m"
    return f"{total // 86400}d {total % 86400 // 3600:02d}h"
