"""Just enough HTTP/1.1 to pass messages through: read a head, know how its body is framed,
and copy that body as it arrives (a chunked body chunk by chunk, so a stream stays a stream).

Heads are kept as bytes and forwarded as they came; only the few headers that decide framing
and connection reuse are looked at.
"""

from __future__ import annotations

import asyncio
import json
from typing import AsyncIterator, List, Optional, Tuple

HEAD_END = b"\r\n\r\n"
CRLF = b"\r\n"
_COPY_SIZE = 65536
# Bodies up to this size are read whole and sent with their head in one write: the common
# predict is one small JSON document, and one write is one system call.
SMALL_BODY = 65536


class BadMessage(Exception):
    """A head or body that is not HTTP/1.1 we can pass through."""


class BodyTooLarge(Exception):
    """A chunked request body grew past the limit; `rest` bytes of the current chunk (its data
    and CRLF) are still unread, then come the chunks after it."""

    def __init__(self, rest: int) -> None:
        super().__init__(rest)
        self.rest = rest


class Head:
    """A parsed request or response head: its first line's parts and the framing headers."""

    __slots__ = ("raw", "first", "lines", "content_length", "chunked", "close", "keep_alive", "upgrade", "expect_continue")

    def __init__(self, raw: bytes) -> None:
        self.raw = raw  # the head as received, ending in CRLF CRLF
        lines = raw[: -len(HEAD_END)].split(CRLF)
        self.first = lines[0].split(b" ", 2)
        if len(self.first) < 2:
            raise BadMessage(f"malformed start line {lines[0][:100]!r}")
        self.lines = lines
        self.content_length: Optional[int] = None
        self.chunked = False
        self.close = False
        self.keep_alive = False
        self.upgrade = False
        self.expect_continue = False
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                try:
                    self.content_length = int(value)
                except ValueError:
                    raise BadMessage(f"invalid content-length {value.strip()[:40]!r}") from None
                if self.content_length < 0:
                    raise BadMessage("negative content-length")
            elif name == b"transfer-encoding":
                self.chunked = value.strip().lower().endswith(b"chunked")
            elif name == b"connection":
                tokens = value.lower()
                self.close = b"close" in tokens
                self.keep_alive = b"keep-alive" in tokens
            elif name == b"upgrade":
                self.upgrade = True
            elif name == b"expect":
                self.expect_continue = value.strip().lower() == b"100-continue"

    # A request's first line: METHOD TARGET VERSION; a response's: VERSION STATUS REASON.
    @property
    def version(self) -> bytes:
        return self.first[2] if self.first[0][:5] != b"HTTP/" else self.first[0]

    @property
    def status(self) -> int:
        try:
            return int(self.first[1])
        except ValueError:
            raise BadMessage(f"invalid status {self.first[1][:20]!r}") from None

    def has_body(self) -> bool:
        return self.chunked or bool(self.content_length)

    def with_target(self, target: bytes, drop_expect: bool = False) -> bytes:
        """This request head with another target (and without Expect, when we answered it)."""
        method, _, version = self.first
        lines = [method + b" " + target + b" " + version]
        lines.extend(line for line in self.lines[1:] if not (drop_expect and line.lower().startswith(b"expect:")))
        return CRLF.join(lines) + HEAD_END

    def with_header(self, header: bytes) -> bytes:
        """This head with one more header line (`name: value`) after the start line."""
        end = self.raw.index(CRLF)
        return self.raw[:end] + CRLF + header + self.raw[end:]


async def read_head(reader: asyncio.StreamReader) -> Optional[Head]:
    """The next head, or None if the peer closed the connection before sending one."""
    try:
        raw = await reader.readuntil(HEAD_END)
    except asyncio.IncompleteReadError as exc:
        if exc.partial.strip():
            raise BadMessage("the connection closed in the middle of a head") from None
        return None
    except asyncio.LimitOverrunError:
        raise BadMessage("head too large") from None
    return Head(raw)


async def copy_body(
    head: Head,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    until_close: bool = False,
    limit: Optional[int] = None,
) -> None:
    """Copy the body framed by `head` from `reader` to `writer`, as it arrives.

    `until_close`: a response without length or chunking, which ends when its sender closes.
    `limit`: the most bytes of chunk data to pass on; a chunk that would pass it is not sent
    and raises BodyTooLarge (a body with a length is checked before it is copied).
    """
    if head.chunked:
        await _copy_chunked(reader, writer, limit)
    elif head.content_length:
        await _copy_exactly(head.content_length, reader, writer)
    elif until_close:
        while True:
            data = await reader.read(_COPY_SIZE)
            if not data:
                return
            writer.write(data)
            await writer.drain()


async def _copy_exactly(remaining: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while remaining:
        data = await reader.read(min(remaining, _COPY_SIZE))
        if not data:
            raise asyncio.IncompleteReadError(b"", remaining)
        writer.write(data)
        remaining -= len(data)
        await writer.drain()


async def discard_body(head: Head, reader: asyncio.StreamReader) -> None:
    """Read the body framed by `head` and drop it: the connection is ready for the next head."""
    await copy_body(head, reader, _DISCARD)  # type: ignore[arg-type]


async def discard_chunked_rest(rest: int, reader: asyncio.StreamReader) -> None:
    """Drop what is left of a chunked body after BodyTooLarge: the chunk's `rest`, then the others."""
    await _copy_exactly(rest, reader, _DISCARD)  # type: ignore[arg-type]
    await _copy_chunked(reader, _DISCARD)  # type: ignore[arg-type]


class _Discard:
    def write(self, data: bytes) -> None:
        pass

    async def drain(self) -> None:
        pass


_DISCARD = _Discard()


async def _copy_chunked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, limit: Optional[int] = None) -> None:
    total = 0
    while True:
        line = await reader.readuntil(CRLF)
        size = chunk_size(line)
        total += size
        if limit is not None and total > limit:
            raise BodyTooLarge(size + 2)
        if size == 0:
            # Trailers, if any, then the empty line that ends the body.
            while line != CRLF:
                writer.write(line)
                line = await reader.readuntil(CRLF)
            writer.write(CRLF)
            await writer.drain()
            return
        writer.write(line)
        await _copy_exactly(size + 2, reader, writer)  # the chunk and its CRLF, flushed as one


def chunk_size(line: bytes) -> int:
    """The size a chunk-size line (`1a;name=value CRLF`) announces."""
    try:
        size = int(line.split(b";", 1)[0], 16)
    except ValueError:
        size = -1
    if size < 0:
        raise BadMessage(f"invalid chunk size line {line[:40]!r}")
    return size


async def read_chunked(reader: asyncio.StreamReader) -> AsyncIterator[bytes]:
    """The data of a chunked body, piece by piece as it arrives (for a reader that wants the
    data, not the framing: the gateway hands it to an ASGI server, which frames it again).
    Trailers are read and dropped."""
    while True:
        size = chunk_size(await reader.readuntil(CRLF))
        if size == 0:
            while await reader.readuntil(CRLF) != CRLF:
                pass
            return
        while size:
            data = await reader.read(min(size, _COPY_SIZE))
            if not data:
                raise asyncio.IncompleteReadError(b"", size)
            size -= len(data)
            yield data
        if await reader.readexactly(2) != CRLF:
            raise BadMessage("a chunk does not end in CRLF")


def json_response(status: int, reason: str, body: object, extra_headers: List[bytes], close: bool = False) -> bytes:
    """A complete response of ours (errors, the status route), JSON with a length."""
    payload = json.dumps(body).encode()
    lines = [
        f"HTTP/1.1 {status} {reason}".encode(),
        b"content-type: application/json",
        b"content-length: " + str(len(payload)).encode(),
        *extra_headers,
    ]
    if close:
        lines.append(b"connection: close")
    return CRLF.join(lines) + HEAD_END + payload


def head_and_small_body(head: Head) -> Tuple[bool, int]:
    """(read the body whole before sending?, its length)."""
    length = head.content_length or 0
    return (not head.chunked and length <= SMALL_BODY), length
