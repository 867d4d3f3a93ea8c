"""Header hygiene between client and replica: what crosses the gateway and what stays behind.

Headers stay bytes from the ASGI scope to the replica's socket and back: nothing is decoded
per request but the few names compared here.
"""

from __future__ import annotations

from typing import Iterable, Optional, Sequence

# RFC 9110 7.6.1: meaningful for one connection only, never forwarded. `host` is the
# replica's own; `authorization` carries the control plane's API key, which a replica must
# never see (model code could log it). `content-length` and `transfer-encoding` are the
# upstream client's to write: it frames the body it sends (upstream.py). `expect`: the
# gateway's ASGI server answered the 100-continue; the body goes to the replica in one piece.
_REQUEST_DROP = frozenset(
    {
        b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"te", b"trailer",
        b"transfer-encoding", b"upgrade", b"host", b"authorization", b"proxy-connection", b"content-length",
        b"expect",
    }
)
# `date` and `server`: the gateway's ASGI server writes its own.
_RESPONSE_DROP = frozenset(
    {
        b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"te", b"trailer",
        b"transfer-encoding", b"upgrade", b"proxy-connection", b"date", b"server",
    }
)


def request_headers(raw: Iterable[tuple[bytes, bytes]], client: Optional[tuple]) -> bytes:
    """The client's headers as header lines for the replica (each ending in CRLF): hop-by-hop
    ones dropped, the client's address added. ASGI servers give names in lower case."""
    lines = []
    tokens = None  # names a `Connection:` header lists: rare, so looked at only when there is one
    for name, value in raw:
        if name in _REQUEST_DROP:
            if name == b"connection":
                tokens = _tokens(value) if tokens is None else tokens | _tokens(value)
            continue
        lines += (name, b": ", value, b"\r\n")
    if tokens:
        lines = _without(lines, tokens)
    if client:
        lines += (b"x-forwarded-for: ", client[0].encode("latin-1"), b"\r\n")
    return b"".join(lines)


def response_headers(lines: Sequence[bytes]) -> list[tuple[bytes, bytes]]:
    """A replica's header lines (`Name: value`, as http1.Head keeps them) as the client gets
    them: lower-case names, hop-by-hop ones dropped."""
    pairs = []
    tokens = None
    for line in lines:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name in _RESPONSE_DROP:
            if name == b"connection":
                tokens = _tokens(value) if tokens is None else tokens | _tokens(value)
            continue
        pairs.append((name, value.strip()))
    if tokens:
        pairs = [(name, value) for name, value in pairs if name not in tokens]
    return pairs


def _tokens(connection: bytes) -> frozenset:
    # Headers named in `Connection:` are hop-by-hop too (RFC 9110 7.6.1).
    return frozenset(token.strip().lower() for token in connection.split(b","))


def _without(parts: list, names: frozenset) -> list:
    """request_headers' parts (name, ": ", value, CRLF, ...) without the headers in `names`."""
    kept = []
    for at in range(0, len(parts), 4):
        if parts[at] not in names:
            kept += parts[at:at + 4]
    return kept
