"""Websockets through the gateway: `/model-{id}/{target}/sync/v1/websocket` -> the replica's.

The gateway opens the replica's websocket first and accepts the client's only once that
worked, so a client never sees an accepted connection that goes nowhere; then messages
are relayed both ways until either side closes, and the close code is passed on.
"""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable, MutableMapping

import aiohttp

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

_GOING_AWAY = 1001
_INTERNAL_ERROR = 1011
_TRY_AGAIN_LATER = 1013


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
    picked = gateway.balancer.pick(route.deployments)
    if picked is None:
        await send({"type": "websocket.close", "code": _TRY_AGAIN_LATER})
        return
    _, replica = picked
    session = gateway.upstream.session()
    url = replica.url.replace("http://", "ws://", 1).replace("https://", "wss://", 1) + parsed.upstream_path
    try:
        upstream = await session.ws_connect(url, protocols=scope.get("subprotocols", ()), autoclose=False, autoping=True)
    except (aiohttp.ClientError, OSError):
        await send({"type": "websocket.close", "code": _TRY_AGAIN_LATER})
        return
    gateway.balancer.started(replica)
    try:
        await send({"type": "websocket.accept", "subprotocol": upstream.protocol})
        await _pump(upstream, receive, send)
    finally:
        gateway.balancer.finished(replica)
        await upstream.close()


async def _pump(upstream: aiohttp.ClientWebSocketResponse, receive: Receive, send: Send) -> None:
    async def client_to_replica() -> None:
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                await upstream.close(code=message.get("code", 1000))
                return
            if message.get("text") is not None:
                await upstream.send_str(message["text"])
            elif message.get("bytes") is not None:
                await upstream.send_bytes(message["bytes"])

    async def replica_to_client() -> None:
        async for message in upstream:
            if message.type == aiohttp.WSMsgType.TEXT:
                await send({"type": "websocket.send", "text": message.data})
            elif message.type == aiohttp.WSMsgType.BINARY:
                await send({"type": "websocket.send", "bytes": message.data})
            elif message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED):
                break
            elif message.type == aiohttp.WSMsgType.ERROR:
                await send({"type": "websocket.close", "code": _INTERNAL_ERROR})
                return
        code = upstream.close_code or 1000
        await send({"type": "websocket.close", "code": code, "reason": ""})

    tasks = [asyncio.ensure_future(client_to_replica()), asyncio.ensure_future(replica_to_client())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
