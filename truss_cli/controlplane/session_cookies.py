"""The `truss_session` cookie: `<token>.<HMAC-SHA256(key, token)>`, the token opaque and random.

The row (store/sessions.py) is what makes a session live; the signature lets a forged or
altered cookie be refused without a database read. The signing key is a file in the data dir
made once like the secrets key (32 random bytes, mode 0600); with PostgreSQL shared by several
hosts, each host needs the same file. The cookie is HttpOnly (page scripts cannot read it),
SameSite=Strict (another site's form or link never carries it) and `Secure` only when the
request came over https: Chromium drops a Secure cookie on plain http off loopback, which
would make sign-in loop silently.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from datetime import timedelta
from typing import Optional

from starlette.requests import Request
from starlette.responses import Response

from truss_cli.controlplane.store import ApiKey, Store
from truss_cli.controlplane.store.secret_store import load_or_create_key
from truss_cli.controlplane.store.sessions import DashboardSession

COOKIE = "truss_session"
KEY_FILE_NAME = "dashboard-session.key"
LIFETIME = timedelta(hours=12)
CSRF_HEADER = "x-csrf-token"


@dataclass(frozen=True)
class SignedIn:
    """A request's live session and the key it signed in with."""

    session: DashboardSession
    key: ApiKey
    token: str


class SessionCookies:
    def __init__(self, store: Store, signing_key: bytes):
        self.store = store
        self._signing_key = signing_key

    @classmethod
    def for_store(cls, store: Store) -> "SessionCookies":
        return cls(store, load_or_create_key(store.data_dir / KEY_FILE_NAME, "dashboard session"))

    def sign(self, token: str) -> str:
        return f"{token}.{self._signature(token)}"

    def unsign(self, value: Optional[str]) -> Optional[str]:
        """The token of a cookie this plane signed, else None."""
        if not value:
            return None
        token, dot, signature = value.rpartition(".")
        if not dot or not token or not hmac.compare_digest(signature, self._signature(token)):
            return None
        return token

    def signed_in(self, request: Request) -> Optional[SignedIn]:
        """The request's live session (a blocking store read: call it off the event loop)."""
        token = self.unsign(request.cookies.get(COOKIE))
        if token is None:  # no cookie, or not one this plane signed: no database read
            return None
        found = self.store.dashboard_sessions.find(token)
        return SignedIn(found[0], found[1], token) if found else None

    def _signature(self, token: str) -> str:
        digest = hmac.new(self._signing_key, token.encode("utf-8", "surrogateescape"), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def cookies_of(request: Request) -> Optional[SessionCookies]:
    return getattr(request.app.state, "session_cookies", None)


def is_https(request: Request) -> bool:
    return request.url.scheme == "https"


def set_session_cookie(response: Response, request: Request, value: str) -> None:
    response.set_cookie(COOKIE, value, max_age=int(LIFETIME.total_seconds()), path="/", httponly=True,
                        samesite="strict", secure=is_https(request))


def clear_session_cookie(response: Response, request: Request) -> None:
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict", secure=is_https(request))


def csrf_matches(expected: str, given: Optional[str]) -> bool:
    return bool(given) and hmac.compare_digest(expected.encode(), given.encode())  # type: ignore[union-attr]
