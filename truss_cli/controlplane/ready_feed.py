"""Following the runtime's ready feed (runtimes/base.ReadyFeed) into the gateway's table.

When the runtime offers one (Kubernetes: EndpointSlices), the gateway routes each deployment
to the URLs the feed says are ready, the moment it says so (gateway/ready_set.py), and the
reconciler publishes its replicas' addresses for it. The feed runs on the event loop, as the
table does, so its pictures land without a thread hop.

If the feed fails for good (the Role may not list or watch endpointslices) or ends, the
gateway goes back to the reconciler's view of ready replicas (what the other runtimes use),
and the control plane's log says so once, with the cause. It is not retried: fixing the
cause (the Role) and restarting the control plane brings it back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Callable, Optional

from truss_cli.controlplane.gateway import RoutingTable
from truss_cli.controlplane.runtimes.base import ReadyFeed
from truss_cli.errors import TrussError

logger = logging.getLogger("truss.controlplane.ready_feed")


class ReadyFeedFollower:
    def __init__(self, feed: ReadyFeed, table: RoutingTable, on_fallback: Callable[[], None] = lambda: None) -> None:
        self.feed = feed
        self.table = table
        self._on_fallback = on_fallback  # the reconciler stops publishing addresses nobody reads
        self._task: Optional[asyncio.Task[None]] = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._follow(), name="ready-feed")

    async def stop(self) -> None:
        if self._task is None:
            return
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass

    async def _follow(self) -> None:
        try:
            async with contextlib.aclosing(self.feed.watch_ready()) as pictures:  # closed (its watch too) when cancelled
                async for ready in pictures:
                    self.table.set_ready(ready)
            cause = "it ended"
        except asyncio.CancelledError:
            raise
        except TrussError as exc:
            cause = exc.message + (f" ({exc.hint})" if exc.hint else "")
        except Exception as exc:  # a bug or an unforeseen answer: still route, by the other view
            logger.exception("the runtime's ready feed failed")
            cause = f"{type(exc).__name__}: {exc}"
        logger.warning("The gateway routes by the reconciler's view of ready replicas from now on (each replica's "
                       "readiness is seen at its next tick): the runtime's ready feed stopped: %s", cause)
        self.table.set_ready(None)
        self._on_fallback()
