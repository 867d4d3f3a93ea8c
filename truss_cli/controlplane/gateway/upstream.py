"""The way to a replica: pooled keep-alive HTTP/1.1 connections (aiohttp) and header hygiene.

aiohttp over httpx because the client decides the gateway's overhead (design.md: ~270 µs vs
~1,050 µs per hop for a minimal proxy); docs/performance.md has this gateway's figures. One
session for the gateway: its connector keeps idle connections per replica (host:port), so a
predict rarely pays a TCP handshake.

A failure is retryable on another replica only if it happened before the request was sent:
the connection could not be made (refused, unreachable, connect timeout). Anything later
(a reset while writing or while waiting for the answer) may have reached the model, and a
predict is not known to be idempotent, so it is reported, not repeated.
"""

from __future__ import annotations

from typing import AsyncIterator, Iterable, Optional, Union

import aiohttp

# RFC 9110 7.6.1: meaningful for one connection only, never forwarded. `host` is the
# replica's own; `authorization` carries the control plane's API key, which a replica must
# never see (model code could log it).
_REQUEST_DROP = frozenset(
    {
        b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"te", b"trailer",
        b"transfer-encoding", b"upgrade", b"host", b"authorization", b"proxy-connection",
    }
)
_RESPONSE_DROP = frozenset(
    {
        b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"te", b"trailer",
        b"transfer-encoding", b"upgrade", b"proxy-connection", b"date", b"server",
    }
)

Body = Union[bytes, AsyncIterator[bytes]]


class ConnectFailed(Exception):
    """The replica could not be reached; nothing was sent, so another replica may take the request."""


class UpstreamBroken(Exception):
    """The exchange failed after the request may have reached the replica."""


class Upstream:
    def __init__(self, connect_timeout: float = 5.0, keepalive_timeout: float = 60.0) -> None:
        self._connect_timeout = connect_timeout
        self._keepalive_timeout = keepalive_timeout
        self._session: Optional[aiohttp.ClientSession] = None

    def _open_session(self) -> aiohttp.ClientSession:
        # Made on first use: a session belongs to the running loop (uvicorn's, not the caller's).
        connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=self._keepalive_timeout, ttl_dns_cache=None)
        self._session = aiohttp.ClientSession(
            connector=connector,
            # No total or read timeout: a predict may run for minutes and a stream for longer.
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=self._connect_timeout),
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,  # pass bytes through, content-encoding intact
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding"),
            trust_env=False,
        )
        return self._session

    def session(self) -> aiohttp.ClientSession:
        return self._session or self._open_session()

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def send(
        self, url: str, method: str, headers: list[tuple[str, str]], body: Optional[Body]
    ) -> aiohttp.ClientResponse:
        """The replica's response (status and headers read, body not yet)."""
        session = self._session or self._open_session()
        try:
            return await session.request(
                method, url, headers=headers, data=body, allow_redirects=False, compress=None, chunked=None
            )
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            raise ConnectFailed(str(exc) or type(exc).__name__) from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise UpstreamBroken(str(exc) or type(exc).__name__) from exc


def request_headers(raw: Iterable[tuple[bytes, bytes]], client: Optional[tuple]) -> list[tuple[str, str]]:
    """The client's headers as the replica gets them: hop-by-hop ones dropped, the client's address added."""
    connection_tokens = _connection_tokens(raw)
    headers = [
        (name.decode("latin-1"), value.decode("latin-1"))
        for name, value in raw
        if name not in _REQUEST_DROP and name not in connection_tokens
    ]
    if client:
        headers.append(("x-forwarded-for", client[0]))
    return headers


def response_headers(raw: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The replica's headers as the client gets them (lower-case names, hop-by-hop ones dropped)."""
    out = []
    for name, value in raw:
        lower = name.lower()
        if lower not in _RESPONSE_DROP:
            out.append((lower, value))
    return out


def _connection_tokens(raw: Iterable[tuple[bytes, bytes]]) -> frozenset:
    # Headers named in `Connection:` are hop-by-hop too (RFC 9110 7.6.1).
    for name, value in raw:
        if name == b"connection":
            return frozenset(token.strip().lower() for token in value.split(b","))
    return frozenset()
