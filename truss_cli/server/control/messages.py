"""JSON lines between the supervisor and its workers (over a Unix socket each worker opens).

Worker → supervisor: `hello {generation, pid}`, then `ready` or `failed {phase, summary,
traceback}` (or `waiting {summary}`: an empty tree, nothing to load), `accepting`, `closed` (no longer accepting), and one answer per `hot_swap`.
Supervisor → worker: `accept`, `stop` (stop accepting, drain, exit), `hot_swap {tree_hash}`.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Optional

# A message is one small JSON object; a traceback is the largest thing one carries.
LIMIT = 4 * 1024 * 1024


def encode(message: dict) -> bytes:
    return json.dumps(message).encode("utf-8") + b"\n"


async def receive(reader: asyncio.StreamReader) -> Optional[dict]:
    """The next message, or None when the other side is gone."""
    try:
        line = await reader.readline()
    except (ConnectionError, asyncio.LimitOverrunError, ValueError):
        return None
    if not line:
        return None
    value: Any = json.loads(line)
    return value if isinstance(value, dict) else None
