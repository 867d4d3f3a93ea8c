"""How `truss watch` shows its syncs: one line per sync on stdout (or one JSON object with
`--output json`), and while a rebuild runs, its phase on stderr (a status line when both
streams are a terminal, a line per phase otherwise).

Called from two threads (the session's sending thread, and its rebuild follower), hence
the lock: a rebuild's status line is stopped before the line that ends it is printed.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from rich.text import Text

from truss_cli.cli import console
from truss_cli.client.patches import SyncResult
from truss_cli.client.rebuilds import RebuildPhase

_FILES_SHOWN = 3
# Actions whose code serves later, not when the answer comes.
_LATER = {
    "rebuild": "the development deployment is rebuilt from this tree; the previous code serves until it is ready",
    "deferred": "staged; it serves once the deployment is up (a rebuild ends, or its next start)",
}
_PHASES = {
    "building": "building the new environment",
    "deploying": "starting a replica on the rebuilt tree",
    "switching": "routing requests to the rebuilt replica",
}
# How a rebuild ended (client/rebuilds.py), other than failed.
_REBUILD_ENDS = ("rebuilt", "superseded")


class SyncPrinter:
    def __init__(self, output: console.OutputFormat) -> None:
        self._json = output is console.OutputFormat.json
        self._lock = threading.Lock()
        self._status: Any = None  # rich's Status while a rebuild runs, on a terminal

    def result(self, result: SyncResult) -> None:
        with self._lock:
            if result.action in _REBUILD_ENDS or result.phase == "rebuild":
                self._stop_status()
            if self._json:
                console.out.print(json.dumps(result.to_dict()), markup=False, highlight=False, soft_wrap=True)
                return
            console.out.print(line(result), soft_wrap=True)
            if result.traceback:
                console.out.print(Text(result.traceback.rstrip(), style="red"), soft_wrap=True)
            if result.build_log_tail:
                console.out.print(Text("\n".join(result.build_log_tail), style="red"), soft_wrap=True)

    def rebuild_phase(self, phase: RebuildPhase) -> None:
        with self._lock:
            what = _PHASES.get(phase.phase, phase.phase)
            message = f"Rebuilding ({phase.phase}: {what}); the previous code serves meanwhile…"
            # A live status line redraws itself: it is drawn only when stdout shares its
            # terminal (rich then prints stdout's lines above it); a pipe gets a line per phase.
            if not (console.err.is_terminal and console.out.is_terminal):
                console.err.print(f"  rebuild {phase.tree_hash[:12]}: {phase.phase}", markup=False)
            elif self._status is None:
                self._status = console.err.status(message)
                self._status.start()
            else:
                self._status.update(message)

    def close(self) -> None:
        with self._lock:
            self._stop_status()

    def _stop_status(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None


def line(result: SyncResult) -> Text:
    """`12:04:05 model/model.py → hot swap in 41 ms (model/model.py: predict changed)`."""
    files = ", ".join(result.files[:_FILES_SHOWN])
    if len(result.files) > _FILES_SHOWN:
        files += f" and {len(result.files) - _FILES_SHOWN} more"
    head = f"{time.strftime('%H:%M:%S')} {files or '(no files)'} → "
    took = "" if result.ms is None else f" in {took_text(result.ms)}"
    if not result.ok:
        if result.phase == "rebuild":
            return Text.assemble(head, (f"rebuild failed: {result.error}", "bold red"), ("; the previous code keeps serving", "red"))
        phase = f" ({result.phase})" if result.phase else ""
        return Text.assemble(
            head, (f"failed{phase}{took}: {result.error}", "bold red"), ("; the previous code keeps serving", "red"),
        )
    reason = f" ({result.reason})" if result.reason else ""
    if result.action in _LATER:
        # Not served yet: a time "from the save to served" would be a lie.
        return Text.assemble(head, (result.action, "yellow"), reason, f": {_LATER[result.action]}")
    if result.action == "rebuilt":
        return Text.assemble(head, ("rebuilt", "green"), took, ": the new code serves")
    if result.action == "superseded":
        return Text.assemble(head, ("rebuild superseded", "yellow"), f": {result.reason}")
    if result.action == "none":
        # The saved files are what already serves (an edit undone, a failed patch reverted).
        return Text.assemble(head, ("no change", "yellow"), ": the code that serves is up to date")
    if result.action == "synced":
        return Text.assemble(head, ("synced", "green"), took, f" ({result.reason})")
    if result.action == "requirements":
        return Text.assemble(head, ("requirements", "green"), took, f": {requirements_text(result)}")
    style = "green" if result.action in ("hot_swap", "restart") else "yellow"
    action = "hot swap" if result.action == "hot_swap" else result.action
    text = Text.assemble(head, (action, style), f"{took}{reason}")
    if result.needs_full_deploy_reason and result.needs_full_deploy_reason != result.reason:
        text.append(f"; {result.needs_full_deploy_reason}", style="yellow")
    return text


def requirements_text(result: SyncResult) -> str:
    """What a requirements sync installed: `+six==1.16.0, -idna, attrs==23.1.0 -> attrs==23.2.0`
    (added, removed, changed as the control plane writes them), then on docker `system packages
    +jq, -curl` (a removed one stays installed until the next rebuild); else the reason."""
    changes = result.requirements or {}
    parts = [f"+{item}" for item in changes.get("added", [])]
    parts += [f"-{item}" for item in changes.get("removed", [])]
    parts += list(changes.get("changed", []))
    packages = result.system_packages or {}
    added, removed = packages.get("added", []), packages.get("removed", [])
    if added or removed:
        words = [f"+{name}" for name in added] + [f"-{name}" for name in removed]
        note = " (removed ones stay installed until the next rebuild)" if removed else ""
        # Its own clause: a package name next to requirement lines would read as a PyPI project.
        return "; ".join(filter(None, [", ".join(parts), f"system packages {', '.join(words)}{note}"]))
    return ", ".join(parts) or result.reason or "requirements changed"


def took_text(ms: float) -> str:
    """Milliseconds for a patch; seconds for what takes them (a rebuild, an install)."""
    return f"{ms:.0f} ms" if ms < 10_000 else f"{ms / 1000:.1f} s"
