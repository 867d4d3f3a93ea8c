"""Websockets through the gateway: `/model-{id}/{target}/sync/v1/websocket` -> the replica's.

The gateway opens the replica's websocket first and accepts the client's only once that
worked, so a client never sees an accepted connection that goes nowhere; then messages
are relayed both ways until either side closes, and the close code is passed on.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any, Awaitable, Callable, MutableMapping

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from truss_cli.controlplane.gateway.upstream import request_target

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

_GOING_AWAY = 1001
_INTERNAL_ERROR = 1011
_TRY_AGAIN_LATER = 1013
# Codes that say no close frame was sent (RFC 6455 7.4.1): never sent in one.
_NOT_SENDABLE = frozenset({1005, 1006, 1015})
# The replica is trusted; this only bounds the gateway's memory per message (uvicorn's
# default for what a client may send it).
_MAX_MESSAGE_BYTES = 16 * 1024 * 1024


async def relay_websocket(gateway: Any, scope: Scope, receive: Receive, send: Send) -> None:
    first = await receive()
    if first["type"] != "websocket.connect":
        return
    refused: list = []

    async def refuse(message: MutableMapping[str, Any]) -> None:
        # target_of answers HTTP errors; before the accept, ASGI's denial is a close (403 at the client).
        if message["type"] == "http.response.start":
            refused.append(message["status"])

    found = await gateway.target_of(scope, refuse)
    if isinstance(found[1], int):
        await send({"type": "websocket.close", "code": _TRY_AGAIN_LATER if found[1] == 503 else 1008})
        return
    parsed, route = found
    # A websocket is a session, not a request: the concurrency cap does not queue it.
    picked = gateway.balancer.pick([dataclasses.replace(d, concurrency=0) for d in route.deployments])
    if picked is None or picked[1] is None:
        await send({"type": "websocket.close", "code": _TRY_AGAIN_LATER})
        return
    _, replica = picked
    url = replica.url.replace("http://", "ws://", 1).replace("https://", "wss://", 1) + request_target(parsed.upstream_path, b"")
    try:
        upstream = await connect(
            url,
            subprotocols=scope.get("subprotocols") or None,
            compression=None,  # messages are relayed decoded: deflate here would cost CPU per message, twice
            proxy=None,  # replica URLs are the runtime's own, never reached through the environment's proxy
            open_timeout=gateway.upstream.connect_timeout,
            ping_interval=None,  # no keepalive of the gateway's own: a client that wants one pings through
            max_size=_MAX_MESSAGE_BYTES,
        )
    except (OSError, InvalidHandshake, asyncio.TimeoutError):
        await send({"type": "websocket.close", "code": _TRY_AGAIN_LATER})
        return
    gateway.balancer.started(replica)
    try:
        await send({"type": "websocket.accept", "subprotocol": upstream.subprotocol})
        await _pump(upstream, receive, send)
    finally:
        gateway.balancer.finished(replica)
        await upstream.close()


async def _pump(upstream: ClientConnection, receive: Receive, send: Send) -> None:
    async def client_to_replica() -> None:
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                code = message.get("code", 1000)
                await upstream.close(code=_GOING_AWAY if code in _NOT_SENDABLE else code)
                return
            if message.get("text") is not None:
                await upstream.send(message["text"])
            elif message.get("bytes") is not None:
                await upstream.send(message["bytes"])

    async def replica_to_client() -> None:
        try:
            async for message in upstream:
                if isinstance(message, str):
                    await send({"type": "websocket.send", "text": message})
                else:
                    await send({"type": "websocket.send", "bytes": message})
        except ConnectionClosed:
            pass  # closed with an error code, or the connection dropped: its code is below
        code = upstream.close_code
        if code is None or code == 1005:
            code = 1000  # closed without a code
        elif code in _NOT_SENDABLE:
            code = _INTERNAL_ERROR  # the replica's connection dropped without a close
        await send({"type": "websocket.close", "code": code, "reason": upstream.close_reason or ""})

    tasks = [asyncio.ensure_future(client_to_replica()), asyncio.ensure_future(replica_to_client())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
