"""The live view of a promotion on a terminal (`truss rollout status --watch`): status and step,
a bar of the traffic split (previous | candidate), each side's READY / wanted replicas, how
long the current phase has lasted (with the stabilization countdown inside a wait) and a
control still pending.

The promotion object (routes/promotions.py) carries no phase or phase start, so both are read
from what it does carry: its row is written only when its state changes, so the `updated_at`
first seen with a given (status, step, split, candidate's wanted replicas) is when that phase
began; a rolling promotion whose candidate has all the replicas it asked for READY and some
traffic has moved, and is still RAMPING_UP, is inside its stabilization wait (the machine moves
the split and starts the wait in one write). The wait's length is the environment's
`stabilization_time_seconds`.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Optional

from rich.console import Group
from rich.text import Text

from truss_cli.cli import tables

BAR_WIDTH = 40
_PREVIOUS_CELL, _CANDIDATE_CELL = "░", "█"  # told apart without colour too


class PhaseClock:
    """When the promotion's current phase began, as first seen by this watcher."""

    def __init__(self) -> None:
        self._key: Optional[tuple[Any, ...]] = None
        self.since: Optional[datetime] = None

    def saw(self, promotion: dict[str, Any]) -> None:
        candidate = promotion.get("candidate_deployment") or {}
        key = (promotion.get("status"), promotion.get("step"), promotion.get("percent_traffic_to_new_version"),
               candidate.get("rollout_replicas"))
        if key != self._key:
            # A control recorded later (a pending pause) rewrites updated_at inside the same
            # phase: the first sighting's stamp is the phase's start.
            self._key, self.since = key, tables.parse_time(promotion.get("updated_at"))


def stabilizing(promotion: dict[str, Any]) -> bool:
    """Inside a rolling step's stabilization wait: traffic moved to READY candidate replicas."""
    candidate = promotion.get("candidate_deployment") or {}
    wanted = candidate.get("rollout_replicas")
    return (promotion.get("kind") == "rolling" and promotion.get("status") == "RAMPING_UP"
            and promotion.get("percent_traffic_to_new_version", 0) > 0
            and wanted is not None and candidate.get("ready_replicas", 0) >= wanted)


def split_bar(percent_to_candidate: int, width: int = BAR_WIDTH) -> Text:
    """`░░░░░░████`: the previous deployment's share, then the candidate's."""
    candidate = round(width * percent_to_candidate / 100)
    return Text.assemble((_PREVIOUS_CELL * (width - candidate), "blue"), (_CANDIDATE_CELL * candidate, "green"))


def _name(view: Optional[dict[str, Any]]) -> str:
    if not view:
        return "-"
    return f"{view['id']} (deleted)" if view.get("deleted") else str(view.get("name") or view.get("id"))


def _replicas(view: Optional[dict[str, Any]]) -> str:
    if not view or view.get("deleted"):
        return "-"
    wanted = view.get("rollout_replicas")
    wanted = wanted if wanted is not None else view.get("desired_replicas")
    return f"{view.get('ready_replicas')}/{wanted} ready"


def _phase(promotion: dict[str, Any], since: Optional[datetime], stabilization_seconds: Optional[float],
           now: datetime) -> str:
    if since is None:
        return "-"
    elapsed = max(0.0, (now - since).total_seconds())
    if stabilizing(promotion):
        if stabilization_seconds is None:
            return f"stabilizing for {tables.duration(elapsed)}"
        left = max(0.0, stabilization_seconds - elapsed)
        return f"stabilizing for {tables.duration(elapsed)}, {tables.duration(left)} left"
    return f"{promotion.get('status')} for {tables.duration(elapsed)}"


def render(body: dict[str, Any], clock: PhaseClock, stabilization_seconds: Optional[float] = None,
           now: Optional[datetime] = None, width: int = 80) -> Group:
    """The view of one promotion body (`GET .../promotion`), as of `now`, `width` columns wide."""
    promotion = body.get("promotion")
    if promotion is None:
        return Group(Text(f"No promotion into {body.get('environment')} yet."))
    now = now or datetime.now(timezone.utc)
    percent = int(promotion.get("percent_traffic_to_new_version") or 0)
    previous, candidate = promotion.get("previous_deployment"), promotion.get("candidate_deployment")
    step = f"  step {promotion['step']}/{promotion['steps']}" if promotion.get("steps") else ""
    label, left, right = "Traffic   ", f"{_name(previous)} {100 - percent}% ", f" {percent}% {_name(candidate)}"
    bar = max(10, min(BAR_WIDTH, width - len(label + left + right) - 1))  # the line fits where it can
    lines = [
        Text.assemble((str(promotion.get("status")), "bold"),
                      f"  {promotion.get('kind')} promotion into {body.get('environment')}{step}"),
        Text.assemble(label, (left, "blue"), split_bar(percent, bar), (right, "green")),
        Text(f"Replicas  previous {_name(previous)} {_replicas(previous)}, "
             f"candidate {_name(candidate)} {_replicas(candidate)}"),
        Text(f"Phase     {_phase(promotion, clock.since, stabilization_seconds, now)}"),
    ]
    if promotion.get("requested_action"):
        lines.append(Text(f"Pending   {promotion['requested_action']} (applies at the next step boundary, after any wait)",
                          style="yellow"))
    if promotion.get("error_message"):
        lines.append(Text(str(promotion["error_message"]), style="red"))
    return Group(*lines)
