"""`/v1/websocket`: hands the connection to the model's `async def websocket(self, ws)`.

As in Truss: the server accepts the connection, the model sends and receives on it, and the
server closes it with 1000 when the method returns. A model without `websocket` gets the
connection accepted and closed with 1003 (unsupported) and a reason saying so, since a client
library reports a close reason more readably than a refused upgrade. When the model raises, the
log shows the user's traceback and the connection closes with 1011 (internal error). Before
the model is ready the upgrade is refused with 503 and a JSON error, like the HTTP routes.
"""

from __future__ import annotations

import logging
from typing import Any, Awaitable, Callable, MutableMapping, Optional

import starlette.responses
import starlette.websockets

from truss_cli.server import load_errors
from truss_cli.server.loader import ModelHost
from truss_cli.server.pipeline import Pipeline

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

NORMAL_CLOSURE = 1000
UNSUPPORTED = 1003
INTERNAL_ERROR = 1011
TRY_AGAIN_LATER = 1013
# RFC 6455: a close reason is at most 123 bytes of UTF-8.
_MAX_REASON_BYTES = 123

logger = logging.getLogger("truss.server")


async def serve(
    host: ModelHost, pipeline: Optional[Pipeline], expose_errors: bool, scope: Scope, receive: Receive, send: Send
) -> None:
    """Answer one websocket connection; `pipeline` is None until the model is ready."""
    ws = starlette.websockets.WebSocket(scope, receive, send)
    if pipeline is None:
        await _refuse(ws, host.unavailable_reason())
        return
    method = pipeline.contract.websocket
    if method is None:
        await ws.accept()
        await _close(ws, UNSUPPORTED, "the model does not define `websocket`, so /v1/websocket is not served")
        return
    await ws.accept()
    try:
        await method.function(ws)
    except starlette.websockets.WebSocketDisconnect as closed:
        logger.info("The client closed the websocket (code %s)", closed.code)
        return
    except Exception as exc:
        description = f"`websocket` raised {load_errors.describe(exc, host.model_dir)}"
        logger.error("%s\n%s", description, load_errors.user_traceback(exc))
        reason = description if expose_errors else "`websocket` raised an exception; the details are in the server log"
        await _close(ws, INTERNAL_ERROR, reason)
        return
    await _close(ws, NORMAL_CLOSURE, "")


async def _refuse(ws: starlette.websockets.WebSocket, message: str) -> None:
    # send_denial_response is Starlette 0.37+; an older one (pinned through a model's FastAPI)
    # gets the accept-and-close answer.
    if "websocket.http.response" in ws.scope.get("extensions", {}) and hasattr(ws, "send_denial_response"):
        await ws.send_denial_response(starlette.responses.JSONResponse({"error": message}, status_code=503))
    else:  # a server without the denial extension: accept, then close saying why
        await ws.accept()
        await _close(ws, TRY_AGAIN_LATER, message)


async def _close(ws: starlette.websockets.WebSocket, code: int, reason: str) -> None:
    encoded = reason.encode()
    if len(encoded) > _MAX_REASON_BYTES:
        reason = encoded[: _MAX_REASON_BYTES - 3].decode(errors="ignore") + "..."
    try:
        await ws.close(code, reason)
    except (RuntimeError, starlette.websockets.WebSocketDisconnect):
        pass  # the model closed it already (or the client went away): nothing left to say
