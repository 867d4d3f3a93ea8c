"""Answering a streaming endpoint with the whole stream at once, for a client that asks for JSON.

Truss does this, and clients rely on it: a request with `Accept: application/json` to a model
whose method streams gets one JSON answer instead of a chunked body. The header must be exactly
that value (as in Truss: `application/json, text/plain` keeps the stream). The OpenAI SDK sends
the same header yet reads the answer as a stream, so a User-Agent naming openai keeps it too.

The answer is the text the stream would have carried (the chunks encoded as streaming.py sends
them, joined, decoded as UTF-8), as a JSON string, or msgpack when the request was msgpack.
Nothing is sent before the generator is exhausted, so a failure on the way is still a proper
error status rather than a cut-off stream. `runtime.streaming_read_timeout` bounds the wait
for each chunk, as it does for a stream.
"""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable, MutableMapping

from truss_cli.server import codec, streaming
from truss_cli.server.pipeline import ChunkStream

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]

_JSON = b"application/json"


class ClientGone(Exception):
    """The client disconnected while the stream was gathered: nobody is left to answer."""


class NotText(Exception):
    """The gathered chunks cannot become one JSON string; the message says why."""


def wants_whole_stream(scope: Scope) -> bool:
    """Whether the request asks for a streaming endpoint's output as one JSON answer."""
    accept = agent = None
    for name, value in scope["headers"]:
        # The first of repeated headers counts, as with Truss's `headers.get`.
        if name == b"accept" and accept is None:
            accept = value
        elif name == b"user-agent" and agent is None:
            agent = value
    return accept == _JSON and (agent is None or b"openai" not in agent.lower())


async def gather(stream: ChunkStream, receive: Receive) -> str:
    """Every chunk of `stream` joined into one text.

    Raises what ChunkStream.next raises (ChunkTimeout, ModelError, an HTTPException from the
    model), NotText for chunks that are not UTF-8 text together or cannot be encoded, and
    ClientGone when the client left (stop working for nobody).
    """
    parts: list[bytes] = []
    disconnected = asyncio.ensure_future(streaming.wait_for_disconnect(receive))
    try:
        chunk = await stream.next()
        while chunk is not ChunkStream.END:
            try:
                parts.append(codec.encode_chunk(chunk))
            except codec.EncodeError as exc:
                raise NotText(f"`{stream.step}` streamed a chunk that cannot be sent ({exc})") from None
            stream.chunks_sent += 1
            if disconnected.done():
                raise ClientGone()
            chunk = await stream.next()
    finally:
        disconnected.cancel()
    try:
        return b"".join(parts).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise NotText(
            f"`{stream.step}` streamed bytes that are not UTF-8 text ({exc.reason} at byte {exc.start}), "
            "so they cannot be answered as one JSON string (Accept: application/json); "
            "request without that header to receive the bytes as a stream"
        ) from None
