"""Is a pid still the process we started? A pid alone is not an identity: after a process
ends, the kernel hands its number to another. The start time (clock ticks since boot, from
/proc) names one process for as long as the machine runs, so a handle records both."""

from __future__ import annotations

from typing import Optional


def start_time(pid: int) -> Optional[int]:
    """When `pid` started, or None if no live process has it (a zombie counts as ended)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as source:
            stat = source.read()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    fields = stat[stat.rfind(")") + 2 :].split()
    state, started = fields[0], fields[19]
    if state in ("Z", "X"):
        return None
    return int(started)


def is_same_process(pid: int, started: Optional[int]) -> bool:
    return started is not None and start_time(pid) == started
