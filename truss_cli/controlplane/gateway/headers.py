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
    tokens = _connection_tokens(raw)
    lines = [name + b": " + value + b"\r\n" for name, value in raw if name not in _REQUEST_DROP and name not in tokens]
    if client:
        lines.append(b"x-forwarded-for: " + client[0].encode("latin-1") + b"\r\n")
    return b"".join(lines)


def response_headers(lines: Sequence[bytes]) -> list[tuple[bytes, bytes]]:
    """A replica's header lines (`Name: value`, as http1.Head keeps them) as the client gets
    them: lower-case names, hop-by-hop ones dropped."""
    pairs = []
    for line in lines:
        name, _, value = line.partition(b":")
        pairs.append((name.strip().lower(), value.strip()))
    tokens = _connection_tokens(pairs)
    return [(name, value) for name, value in pairs if name not in _RESPONSE_DROP and name not in tokens]


def _connection_tokens(raw: Iterable[tuple[bytes, bytes]]) -> frozenset:
    # Headers named in `Connection:` are hop-by-hop too (RFC 9110 7.6.1).
    for name, value in raw:
        if name == b"connection":
            return frozenset(token.strip().lower() for token in value.split(b","))
    return frozenset()
