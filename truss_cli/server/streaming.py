"""Sending a model's chunk stream as a chunked HTTP response, and cutting it off cleanly.

Once the status line is out, a failure can no longer become a 500. The response is then cut
off (returned without its final empty chunk), so the client sees a broken stream, not a
success. uvicorn logs such an ending as `ASGI callable returned without completing response.`,
a line that says nothing about the cause; our own log line says it, so uvicorn's is hidden,
only for the responses this module cut off on purpose.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from typing import Any, Awaitable, Callable, MutableMapping

from truss_cli.server import codec
from truss_cli.server.pipeline import ChunkStream, ChunkTimeout, ModelError

Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

logger = logging.getLogger("truss.server")

# Set in the request's task when this module cuts a response off; uvicorn logs its line from
# the same task right after the app returns, so the filter sees it.
_cut_off = contextvars.ContextVar("truss_response_cut_off", default=False)
_UVICORN_INCOMPLETE = "ASGI callable returned without completing response."


class _HideDeliberateCutOffs(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.msg == _UVICORN_INCOMPLETE and _cut_off.get())


def hide_uvicorn_line_for_cut_offs() -> None:
    uvicorn_log = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _HideDeliberateCutOffs) for f in uvicorn_log.filters):
        uvicorn_log.addFilter(_HideDeliberateCutOffs())


async def send_stream(
    stream: ChunkStream,
    first: Any,
    receive: Receive,
    send: Send,
    report: Callable[[ModelError, str], None],
) -> int:
    """Send `first` and the rest of `stream`; `report(error, context)` logs a model failure."""
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", codec.chunk_content_type(first))]})
    disconnected = asyncio.ensure_future(wait_for_disconnect(receive))
    try:
        chunk = first
        while chunk is not ChunkStream.END:
            await send({"type": "http.response.body", "body": codec.encode_chunk(chunk), "more_body": True})
            stream.chunks_sent += 1
            if disconnected.done():
                logger.info("Client disconnected; stopping the stream")
                return 200
            chunk = await stream.next()
    except ChunkTimeout:
        log_chunk_timeout(stream, "the next chunk", "the response was cut off")
        _cut_off.set(True)
        return 200
    except ModelError as error:
        report(error, f"after {_chunks(stream.chunks_sent)}; the response was cut off")
        _cut_off.set(True)
        return 200
    except codec.EncodeError as exc:
        logger.error(
            "`%s` streamed a chunk that cannot be sent (%s) after %s; the response was cut off",
            stream.step,
            exc,
            _chunks(stream.chunks_sent),
        )
        _cut_off.set(True)
        return 200
    except Exception:
        logger.exception("`%s` failed after %s; the response was cut off", stream.step, _chunks(stream.chunks_sent))
        _cut_off.set(True)
        return 200
    finally:
        disconnected.cancel()
    await send({"type": "http.response.body", "body": b"", "more_body": False})
    return 200


def log_chunk_timeout(stream: ChunkStream, waiting_for: str, outcome: str) -> None:
    logger.error(
        "`%s` streamed nothing for %g s while waiting for %s (runtime.streaming_read_timeout); %s",
        stream.step,
        stream.read_timeout,
        waiting_for,
        outcome,
    )


def _chunks(count: int) -> str:
    return "1 chunk" if count == 1 else f"{count} chunks"


async def wait_for_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
