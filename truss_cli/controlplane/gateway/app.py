"""The prediction gateway: an ASGI app the control plane mounts in front of every replica.

Plain ASGI, like the model server (truss_cli/server/app.py): a request is a string parse of
its path, an authorizer call, a resolver call, a pick and a relay; no framework routing. In
that order, and the order matters: the authorizer runs before anything reveals whether a
model or target exists, and the body is not read before the caller is known.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any, Awaitable, Callable, MutableMapping, Optional, Union

from truss_cli.controlplane.gateway import body as request_body
from truss_cli.controlplane.gateway import paths
from truss_cli.controlplane.gateway.admission import Admission, LoadMeter
from truss_cli.controlplane.gateway.balancer import Balancer
from truss_cli.controlplane.gateway.errors import send_error
from truss_cli.controlplane.gateway.metrics import GatewayMetrics
from truss_cli.controlplane.gateway.routes import (
    Authorizer,
    NotReady,
    Parked,
    Replica,
    Resolution,
    Resolver,
    Route,
    UnknownTarget,
)
from truss_cli.controlplane.gateway.headers import request_headers
from truss_cli.controlplane.gateway.upstream import ConnectFailed, Upstream, UpstreamBroken, UpstreamResponse, request_target
from truss_cli.controlplane.gateway.websocket import relay_websocket
from truss_cli.server.protocol import DEFAULT_MAX_REQUEST_BYTES, REPLICA_ID_HEADER

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

_REPLICA_ID = REPLICA_ID_HEADER.encode()

logger = logging.getLogger("truss.gateway")


class Gateway:
    """`resolver` maps (model, target) to replicas; `authorizer` (optional) may refuse first."""

    def __init__(
        self,
        resolver: Resolver,
        authorizer: Optional[Authorizer] = None,
        max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
        upstream: Optional[Upstream] = None,
        metrics: Optional[GatewayMetrics] = None,
    ) -> None:
        self.resolver = resolver
        self.authorizer = authorizer
        self.max_request_bytes = max_request_bytes
        self.upstream = upstream or Upstream()
        self.metrics = metrics or GatewayMetrics()
        self.balancer = Balancer()
        self.admission = Admission()  # requests beyond a deployment's concurrency cap wait here
        self.load = LoadMeter()  # in flight + waiting per deployment: what the autoscaler reads
        # How long a request may wait in a deployment's line (the resolver's park timeout).
        self.queue_timeout_seconds = float(getattr(resolver, "park_timeout_seconds", 60.0))

    def capacity_changed(self, deployment_id: str, replicas: Any, concurrency: int) -> None:
        """The resolver's replicas or cap of a deployment changed: wake as many waiters as
        there is room now (all of them when nothing is left: they resolve again)."""
        if not replicas or not concurrency:
            self.admission.release_all(deployment_id)
            return
        outstanding = self.balancer.outstanding
        room = sum(max(0, concurrency - outstanding.get(r.url, 0)) for r in replicas)
        if room:
            self.admission.release(deployment_id, room)

    def render_metrics(self) -> str:
        """Prometheus text; the control plane serves it at /metrics."""
        return self.metrics.render()

    async def aclose(self) -> None:
        """Close pooled connections (the control plane's shutdown)."""
        await self.upstream.aclose()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "websocket":
            await relay_websocket(self, scope, receive, send)
        elif kind == "lifespan":  # when run on its own (the benchmark); mounted, the control plane's lifespan runs
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def target_of(self, scope: Scope, send: Send) -> Union[tuple[paths.GatewayPath, Route], tuple[str, int]]:
        """Parse, authorize, resolve. On a refusal, answers it and returns (model id, status)."""
        headers = scope["headers"]
        path = scope["path"]
        host = None if path.startswith("/model-") else _header(headers, b"host")
        parsed = paths.parse(path, host)
        if isinstance(parsed, paths.BadPath):
            return "", await send_error(send, 404, "NOT_FOUND", parsed.detail)
        model_id = parsed.model_id
        if self.authorizer is not None:
            authorization = _header(headers, b"authorization")
            denial = await self.authorizer(None if authorization is None else authorization.decode("latin-1"), model_id)
            if denial is not None:
                return model_id, await send_error(send, denial.status, denial.code(), denial.detail)
        if isinstance(parsed, paths.WakePath):
            return model_id, await self._wake(parsed, scope, send)
        resolution = await self._resolve(parsed)
        if isinstance(resolution, Route):
            return parsed, resolution
        if isinstance(resolution, UnknownTarget):
            return model_id, await send_error(send, 404, resolution.error_code, resolution.detail, hint=resolution.hint)
        if isinstance(resolution, NotReady):
            status = await send_error(send, 503, resolution.error_code, resolution.detail, resolution.retry_after_seconds)
            return model_id, status
        # Parked past its timeout
        detail = f"{resolution.detail}; no replica became ready within {resolution.timeout_seconds:g} s"
        return model_id, await send_error(send, 503, "NO_REPLICA_READY", detail, resolution.retry_after_seconds)

    async def _wake(self, parsed: paths.WakePath, scope: Scope, send: Send) -> int:
        """`POST .../wake` -> 202 at once: the target's deployments scaled to zero start
        waking, and every one's idle clock starts again (`truss watch` calls it to keep a
        development deployment awake). Answered here: nothing reaches a replica."""
        if scope["type"] != "http" or scope["method"] != "POST":
            return await send_error(send, 405, "METHOD_NOT_ALLOWED", f"{scope['path']}: wake with POST")
        wake = getattr(self.resolver, "wake", None)
        if wake is None:
            return await send_error(send, 404, "NOT_FOUND", "this gateway has no wake route")
        woken = wake(parsed.model_id, parsed.target)
        if isinstance(woken, UnknownTarget):
            return await send_error(send, 404, woken.error_code, woken.detail, hint=woken.hint)
        body = json.dumps({
            "model_id": parsed.model_id, "target": parsed.target, "waking_up": any(w for _, w in woken),
            "deployments": [{"deployment_id": d, "waking_up": w} for d, w in woken],
        }).encode()
        await send({"type": "http.response.start", "status": 202,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
        return 202

    async def _resolve(self, parsed: paths.GatewayPath) -> Resolution:
        resolution = await self.resolver.resolve(parsed.model_id, parsed.target)
        if not isinstance(resolution, Parked):
            return resolution
        deadline = time.monotonic() + resolution.timeout_seconds
        parked = self.metrics.parked
        parked[parsed.model_id] += 1
        counted: Optional[str] = None  # the deployment whose load this waiting request is
        try:
            while isinstance(resolution, Parked):
                if resolution.deployment_id != counted:
                    # Load of the deployment it waits for, as a request queued behind its cap
                    # is: a burst at zero asks for as many replicas as it needs at once.
                    if counted is not None:
                        self.load.change(counted, -1)
                    counted = resolution.deployment_id
                    if counted is not None:
                        self.load.change(counted, 1)
                left = deadline - time.monotonic()
                if left <= 0:
                    return resolution
                try:
                    await asyncio.wait_for(resolution.ready(), left)
                except asyncio.TimeoutError:
                    return resolution
                resolution = await self.resolver.resolve(parsed.model_id, parsed.target)
            return resolution
        finally:
            parked[parsed.model_id] -= 1
            if counted is not None:
                self.load.change(counted, -1)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        metrics = self.metrics
        found = await self.target_of(scope, send)
        if isinstance(found[1], int):
            metrics.observe((found[0], ""), found[1], time.perf_counter() - started)
            return
        parsed, route = found
        length = request_body.content_length(scope["headers"])
        limit = self.max_request_bytes
        if length is not None and length > limit:
            status = await send_error(send, 413, "PAYLOAD_TOO_LARGE", _too_large(limit))
            metrics.observe((parsed.model_id, ""), status, time.perf_counter() - started)
            return
        exchange = _Exchange(self, scope, receive, send, parsed, route, length)
        try:
            await exchange.run()
        finally:
            metrics.observe((parsed.model_id, exchange.deployment_id), exchange.status, time.perf_counter() - started)


class _Exchange:
    """One request relayed to a replica: the body, the pick, retries before send, the answer."""

    def __init__(self, gateway: Gateway, scope: Scope, receive: Receive, send: Send,
                 parsed: paths.GatewayPath, route: Route, length: Optional[int]) -> None:
        self.gateway = gateway
        self.scope = scope
        self.receive = receive
        self.send = send
        self.parsed = parsed
        self.route = route
        self.length = length
        self.deployment_id = ""
        self.status = 500

    async def run(self) -> None:
        gateway, parsed = self.gateway, self.parsed
        limit = gateway.max_request_bytes
        streamed: Optional[request_body.StreamedBody] = None
        whole: Optional[bytes] = None
        method = self.scope["method"]
        try:
            if self.length is not None and self.length <= request_body.BUFFER_BYTES:
                whole = await request_body.read_whole(self.receive, limit)
            elif self.length is not None or method not in ("GET", "HEAD", "DELETE", "OPTIONS"):
                streamed = request_body.StreamedBody(self.receive, limit)
        except request_body.TooLarge:
            self.status = await send_error(self.send, 413, "PAYLOAD_TOO_LARGE", _too_large(limit))
            return
        except request_body.ClientGone:
            self.status = 499
            return
        headers = request_headers(self.scope["headers"], self.scope.get("client"))
        target = request_target(parsed.upstream_path, self.scope.get("query_string", b""))
        failed: set[str] = set()
        balancer, metrics, upstream = gateway.balancer, gateway.metrics, gateway.upstream
        admission, load = gateway.admission, gateway.load
        route = self.route
        deadline: Optional[float] = None
        woken = False  # released from a line: it may take the slot before the others waiting
        released_from: Optional[str] = None  # the deployment whose line released it, until it picks
        while True:
            picked = balancer.pick(route.deployments, failed)
            if released_from is not None:
                if picked is None or picked[0].deployment_id != released_from:
                    # Released to take a slot of that deployment, it goes elsewhere (the split
                    # moved while it waited): the slot goes to the next in that line, or that
                    # line would wait for a release that never comes.
                    admission.release(released_from)
                released_from = None
            if picked is None:
                detail = "no replica of the target could be reached" if failed else "no replica of the target is ready"
                self.status = await send_error(self.send, 503, "NO_REPLICA_READY", detail, 1 if failed else 5)
                return
            if picked[1] is None or (not woken and admission.waiting(picked[0].deployment_id)):
                # Every replica holds concurrency_target requests (or others wait first): wait in line.
                waiting_for = picked[0]
                if deadline is None:
                    deadline = time.monotonic() + gateway.queue_timeout_seconds
                load.change(waiting_for.deployment_id, 1)
                try:
                    released = await admission.wait(waiting_for.deployment_id, deadline - time.monotonic())
                finally:
                    load.change(waiting_for.deployment_id, -1)
                if not released:
                    detail = (f"all replicas of deployment {waiting_for.deployment_id} are at their concurrency "
                              f"target ({waiting_for.concurrency}); waited {gateway.queue_timeout_seconds:g} s")
                    self.status = await send_error(self.send, 503, "NO_REPLICA_READY", detail, 1)
                    return
                woken = True
                resolution = await gateway._resolve(parsed)  # parks again if it is starting
                if not isinstance(resolution, Route):
                    admission.release(waiting_for.deployment_id)  # the slot it was given: the next in line
                    detail = getattr(resolution, "detail", "the target changed while the request waited")
                    code = resolution.error_code if isinstance(resolution, UnknownTarget) else "NO_REPLICA_READY"
                    status = 404 if isinstance(resolution, UnknownTarget) else 503
                    hint = resolution.hint if isinstance(resolution, UnknownTarget) else None
                    self.status = await send_error(self.send, status, code, detail, None if status == 404 else 1, hint)
                    return
                route = resolution
                released_from = waiting_for.deployment_id
                continue
            deployment, replica = picked
            self.deployment_id = deployment.deployment_id
            key = (parsed.model_id, deployment.deployment_id)
            balancer.started(replica)
            metrics.in_flight[key] += 1
            load.change(deployment.deployment_id, 1)
            if woken and admission.waiting(deployment.deployment_id) and balancer.has_room(deployment):
                admission.release(deployment.deployment_id)  # more room than this one slot: the next may go too
            try:
                body = whole if streamed is None else streamed.chunks()
                try:
                    response = await upstream.send(replica.url, target, method, headers, body, self.length)
                except ConnectFailed as exc:
                    metrics.error(key, "connect")
                    if streamed is not None and streamed.started:
                        self.status = await send_error(self.send, 502, "REPLICA_UNREACHABLE", f"replica {replica.id}: {exc}")
                        return
                    logger.info("Replica %s unreachable (%s); trying another", replica.id, exc)
                    failed.add(replica.url)
                    continue
                except UpstreamBroken as exc:
                    metrics.error(key, "upstream")
                    self.status = await send_error(self.send, 502, "REPLICA_FAILED", f"replica {replica.id}: {exc}")
                    return
                except request_body.TooLarge:
                    self.status = await send_error(self.send, 413, "PAYLOAD_TOO_LARGE", _too_large(limit))
                    return
                except request_body.ClientGone:
                    self.status = 499
                    return
                try:
                    await self._relay(response, replica, key, request_done=streamed is None or streamed.finished)
                finally:
                    response.release()
                return
            finally:
                metrics.in_flight[key] -= 1
                load.change(deployment.deployment_id, -1)
                balancer.finished(replica)
                if deployment.concurrency:
                    admission.release(deployment.deployment_id)  # its slot: the first in line

    async def _relay(self, response: UpstreamResponse, replica: Replica, key: tuple[str, str], request_done: bool) -> None:
        # The client is shown the control plane's replica id, the one `truss` commands, logs
        # and errors name. A server's own id is the same on the process and Docker runtimes,
        # but a Kubernetes pod's is its pod's name (one template for every pod), so replace it.
        headers = [(name, value) for name, value in response.headers if name != _REPLICA_ID]
        headers.append((_REPLICA_ID, replica.id.encode()))
        self.status = status = response.status
        send = self.send
        length = response.content_length
        if length is not None and length <= request_body.BUFFER_BYTES:
            try:
                data = await response.read()
            except UpstreamBroken as exc:
                self.gateway.metrics.error(key, "upstream")
                self.status = await send_error(send, 502, "REPLICA_FAILED", f"replica {replica.id}: {exc}")
                return
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": data})
            return
        await send({"type": "http.response.start", "status": status, "headers": headers})
        # uvicorn drops sends to a client that left without telling; watch for the disconnect
        # so a stream nobody reads stops at the replica too (an LLM stops generating).
        gone = asyncio.ensure_future(_disconnected(self.receive)) if request_done else None
        chunks = response.chunks()
        try:
            async for chunk in chunks:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                if gone is not None and gone.done():
                    self.status = 499
                    return
        except UpstreamBroken as exc:
            # The status line is out: cut the response off so the client sees a broken stream.
            self.gateway.metrics.error(key, "upstream_mid_response")
            logger.warning("Replica %s broke off its response: %s", replica.id, exc)
            return
        finally:
            await chunks.aclose()
            if gone is not None and not gone.done():
                gone.cancel()
        await send({"type": "http.response.body", "body": b""})


async def _disconnected(receive: Receive) -> None:
    """Returns when the client has gone. A request without a body (a GET) was never read, so
    its empty `http.request` comes first."""
    while (await receive())["type"] != "http.disconnect":
        pass


def _header(headers: list, name: bytes) -> Optional[bytes]:
    for key, value in headers:
        if key == name:
            return value
    return None


def _too_large(limit: int) -> str:
    return f"the request body is larger than the gateway's limit of {limit} bytes"
