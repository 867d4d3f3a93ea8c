"""`.../deployments/{ref}/logs`: the build log and the replicas' logs as NDJSON lines.

`follow=true` keeps the stream open: build logs end when the deployment reaches a final
state (waiting first for a build that has not started), replica logs never (the client
closes).
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Iterator, Optional

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse

from truss_cli.controlplane.auth import require_admin
from truss_cli.controlplane.builds import build_log_path
from truss_cli.controlplane.errors import ApiError
from truss_cli.controlplane.plane import ControlPlane
from truss_cli.controlplane.runtimes.base import Handle, LogLine
from truss_cli.controlplane.runtimes.logfile import read_lines
from truss_cli.controlplane.routes.views import plane_of
from truss_cli.controlplane.store import states

router = APIRouter(dependencies=[Depends(require_admin)])

_FINAL = frozenset({states.ACTIVE, states.BUILD_FAILED, states.DEPLOY_FAILED, states.UNHEALTHY, states.INACTIVE,
                    states.SCALED_TO_ZERO})
_KINDS = ("build", "replica", "all")
_BUILD_LOG_POLL_SECONDS = 0.2
_REPLICA_POLL_SECONDS = 0.2
_ADDED = object()  # a queue marker: one more reader


def _since(text: Optional[str]) -> Optional[datetime]:
    if not text:
        return None
    try:
        return datetime.now(timezone.utc) - timedelta(seconds=float(text))
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ApiError(400, "BAD_SINCE", f"since={text!r}: give seconds or an ISO 8601 time") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _line(at: datetime, source: str, text: str) -> bytes:
    return (json.dumps({"at": at.isoformat(), "source": source, "text": text}) + "\n").encode()


@router.get("/v1/models/{model_ref}/deployments/{deployment_ref}/logs")
async def deployment_logs(
    request: Request, model_ref: str, deployment_ref: str,
    since: Optional[str] = None, follow: bool = False, kind: str = Query("all"),
) -> StreamingResponse:
    if kind not in _KINDS:
        raise ApiError(400, "BAD_KIND", f"kind={kind!r}: choose one of {', '.join(_KINDS)}")
    plane = plane_of(request)
    model = await asyncio.to_thread(plane.store.models.get, model_ref)
    deployment = await asyncio.to_thread(plane.store.deployments.get, model.id, deployment_ref)
    start = _since(since)
    return StreamingResponse(_stream(plane, deployment.id, start, follow, kind), media_type="application/x-ndjson")


def _build_lines(path: Path, since: Optional[datetime], follow: bool, still_building: Callable[[], bool]) -> Iterator[LogLine]:
    """The build log's lines. Following, a log not written yet is waited for: a deployment
    queued behind other builds has none until a build worker takes it (`truss push --tail`
    asks right after creating it); the lines are followed until the deployment is final."""
    if follow:
        while not path.exists() and still_building():
            time.sleep(_BUILD_LOG_POLL_SECONDS)
    # A build that ended between the two looks above is read to its end all the same.
    yield from read_lines(path, since, follow, is_alive=still_building)


async def _stream(plane: ControlPlane, deployment_id: str, since: Optional[datetime], follow: bool,
                  kind: str) -> AsyncIterator[bytes]:
    queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=1000)  # bytes, _ADDED, or None (a reader ended)
    loop = asyncio.get_running_loop()
    stop = False

    def pump(source: str, lines: object) -> None:  # a thread per log: the readers block
        try:
            for line in lines:  # type: ignore[attr-defined]
                if stop:
                    return
                asyncio.run_coroutine_threadsafe(queue.put(_line(line.at, source, line.text)), loop).result()
        finally:
            asyncio.run_coroutine_threadsafe(queue.put(None), loop).result()

    def still_building() -> bool:
        if stop:
            return False  # nobody reads any more
        try:
            return plane.store.deployments.get_by_id(deployment_id).status not in _FINAL
        except Exception:
            return False

    readers = []
    if kind in ("build", "all"):
        path = build_log_path(plane.store, deployment_id)
        readers.append(("build", _build_lines(path, since, follow, still_building)))
    seen: set[str] = set()

    async def replica_readers() -> list[tuple[str, object]]:
        found = []
        for row in await asyncio.to_thread(plane.store.replicas.list, deployment_id):
            handle = Handle.from_dict(dict(row.handle))
            if handle.replica_id not in seen:
                seen.add(handle.replica_id)
                found.append((f"replica:{handle.replica_id}", plane.runtime.logs(handle, since, follow)))
        return found

    if kind in ("replica", "all"):
        readers.extend(await replica_readers())
    tasks = [asyncio.create_task(asyncio.to_thread(pump, source, lines)) for source, lines in readers]

    async def discover() -> None:
        # Following, replicas started later (a restart, a wake, a development rebuild) are
        # followed too: the stream is what `truss logs --follow` shows for the deployment.
        try:
            while not stop:
                await asyncio.sleep(_REPLICA_POLL_SECONDS)
                for source, lines in await replica_readers():
                    await queue.put(_ADDED)
                    tasks.append(asyncio.create_task(asyncio.to_thread(pump, source, lines)))
        finally:
            await queue.put(None)

    if follow and kind in ("replica", "all"):
        tasks.append(asyncio.create_task(discover()))
    try:
        remaining = len(tasks)
        while remaining:
            item = await queue.get()
            if item is None:
                remaining -= 1
                continue
            if item is _ADDED:
                remaining += 1
                continue
            yield item
    finally:
        stop = True  # the client went away: the pumps end at their next line
