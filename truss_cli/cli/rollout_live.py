"""The live view of a promotion on a terminal (`truss rollout status --watch`): status and step,
a bar of the traffic split (previous | candidate), each side's READY / wanted replicas, how
long the current phase has lasted (with the time left inside a stabilization wait or a canary's
ramp) and a control still pending.

The phase and its times are the promotion object's (`phase`, `seconds_in_phase`,
`seconds_left_in_phase`, computed by the control plane from the promotion's own plan), so no
clock agreement with a remote is needed; between two polls the view counts on from the last
answer with the local monotonic clock.
"""


from __future__ import annotations

import time
from typing import Any, Callable, Optional

from rich.console import Group
from rich.text import Text

from truss_cli.cli import tables

BAR_WIDTH = 40
_PREVIOUS_CELL, _CANDIDATE_CELL = "░", "█"  # told apart without colour too


class PhaseClock:
    """The promotion's phase times as of its last answer, counted on locally until the next."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self._seen_at: Optional[float] = None
        self._in_phase: Optional[float] = None
        self._left: Optional[float] = None

    def saw(self, promotion: dict[str, Any]) -> None:
        self._seen_at = self._monotonic()
        self._in_phase = promotion.get("seconds_in_phase")
        self._left = promotion.get("seconds_left_in_phase")

    def times(self) -> tuple[Optional[float], Optional[float]]:
        """(seconds in the phase, seconds left in its timed wait or None), as of now."""
        if self._seen_at is None or self._in_phase is None:
            return None, None
        since = max(0.0, self._monotonic() - self._seen_at)
        left = None if self._left is None else max(0.0, self._left - since)
        return self._in_phase + since, left


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


# What each phase of a rolling promotion is waiting for (see docs/remote-api.md, `phase`).
_PHASE_WORDS = {"up": "waiting for the candidate's replicas", "stabilizing": "stabilizing"}


def _phase(promotion: dict[str, Any], clock: PhaseClock) -> str:
    elapsed, left = clock.times()
    if elapsed is None:
        return "-"
    status = str(promotion.get("status"))
    words = status
    if status in ("RELEASING", "RAMPING_UP"):
        if promotion.get("kind") == "canary" and status == "RAMPING_UP":
            words = "ramping up"
        else:
            words = _PHASE_WORDS.get(str(promotion.get("phase")), status)
    line = f"{words} for {tables.duration(elapsed)}"
    return line if left is None else f"{line}, {tables.duration(left)} left"


def render(body: dict[str, Any], clock: PhaseClock, width: int = 80) -> Group:
    """The view of one promotion body (`GET .../promotion`), `width` columns wide."""
    promotion = body.get("promotion")
    if promotion is None:
        return Group(Text(f"No promotion into {body.get('environment')} yet."))
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
        Text(f"Phase     {_phase(promotion, clock)}"),
    ]
    if promotion.get("requested_action"):
        lines.append(Text(f"Pending   {promotion['requested_action']} (applies at the next step boundary, after any wait)",
                          style="yellow"))
    if promotion.get("error_message"):
        lines.append(Text(str(promotion["error_message"]), style="red"))
    return Group(*lines)
