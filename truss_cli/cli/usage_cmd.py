"""`truss usage`: replica time and requests per deployment, deleted deployments included."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from typing import Any, Optional

import typer
from rich.text import Text

from truss_cli.cli import connect, console, tables
from truss_cli.cli.help import Command
from truss_cli.errors import UsageError

_RELATIVE = re.compile(r"^(\d+)([mhdw])$")
_UNITS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def usage(
    model: Optional[str] = typer.Option(None, "--model", "-m", metavar="NAME_OR_ID", help="Only this model's deployments (default: every model)."),
    since: Optional[str] = typer.Option(
        None, "--since", metavar="DATE",
        help="Only usage from this time on: a date (2024-05-01), an ISO time (2024-05-01T12:00:00Z) or an age (30m, 12h, 7d, 2w). Default: everything recorded.",
    ),
    remote: Optional[str] = connect.remote_option(),
    output: console.OutputFormat = console.output_option(),
) -> None:
    """Show replica time and requests served, per deployment (deleted deployments are marked)."""
    start = parse_since(since)
    with connect.api(remote) as api:
        answer = api.usage(model, start)
    rows = answer.get("usage") or []
    if output is console.OutputFormat.json:
        console.result(output, "", answer)
        return
    if not rows:
        console.out.print("No usage recorded" + (f" since {answer.get('since') or start}" if start else "") + ".", markup=False)
        return
    grid = tables.table(
        "MODEL",
        "DEPLOYMENT",
        ("ID", {"no_wrap": True}),
        ("REPLICA TIME", {"justify": "right", "no_wrap": True}),
        ("REQUESTS", {"justify": "right"}),
    )
    for row in rows:
        tables.add_row(grid, [row.get("model_name") or row.get("model_id"), _deployment(row), row.get("deployment_id"),
                              tables.duration(row.get("replica_seconds")), row.get("requests", 0)])
    if len(rows) > 1:
        grid.add_section()
        tables.add_row(grid, [Text("total", style="bold"), "", "", tables.duration(sum(float(r.get("replica_seconds") or 0) for r in rows)),
                              sum(int(r.get("requests") or 0) for r in rows)])
    if answer.get("since") or start:
        console.out.print(f"Usage since {answer.get('since') or start}", markup=False)
    tables.print_table(grid)


def _deployment(row: dict[str, Any]) -> Text:
    name = str(row.get("deployment_name") or row.get("deployment_id"))
    if row.get("deleted"):
        return Text.assemble(name, " ", ("(deleted)", "dim"))
    return Text(name)


def parse_since(text: Optional[str], now: Optional[datetime] = None) -> Optional[str]:
    """`--since` as the ISO time the server takes: dates and times as given, ages from now."""
    if text is None:
        return None
    text = text.strip()
    relative = _RELATIVE.match(text)
    if relative:
        now = now or datetime.now(timezone.utc)
        return (now - timedelta(seconds=int(relative.group(1)) * _UNITS[relative.group(2)])).isoformat(timespec="seconds")
    try:
        datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(
            f"--since {text!r}: give a date (2024-05-01), an ISO time (2024-05-01T12:00:00Z) or an age (30m, 12h, 7d, 2w)"
        ) from None
    return text
