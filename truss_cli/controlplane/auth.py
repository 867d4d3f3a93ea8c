"""Who is calling: `Authorization: Api-Key <key>` or `Bearer <key>`, checked against the store,
or a dashboard session cookie (session_cookies.py).

The store compares hashes (api_keys.authenticate); nothing here ever logs or returns a key.
Management routes depend on `require_admin`; the gateway asks `GatewayAuthorizer`, which
also scopes an invoke key to the models it names.

A request without an `Authorization` header may carry the dashboard's session cookie instead:
it then acts with the admin key that signed in, and any request that is not a read must send
the session's CSRF token as `X-CSRF-Token` (403 CSRF_FAILED otherwise). The cookie is
SameSite=Strict already; the token is the second lock, and it keeps a page's actions on the
very routes (and checks) the CLI uses. With the header, the cookie is ignored: the CLI path is
unchanged.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from typing import Optional

from fastapi import Request

from truss_cli.controlplane.session_cookies import COOKIE, CSRF_HEADER, cookies_of, csrf_matches
from truss_cli.controlplane.errors import ApiError
from truss_cli.controlplane.gateway import Denial
from truss_cli.controlplane.store import ApiKey, Store

_SCHEMES = ("api-key", "bearer")
_READS = frozenset({"GET", "HEAD", "OPTIONS"})


def token_of(authorization: Optional[str]) -> Optional[str]:
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() not in _SCHEMES or not token.strip():
        return None
    return token.strip()


def authenticate(store: Store, authorization: Optional[str]) -> Optional[ApiKey]:
    token = token_of(authorization)
    return store.api_keys.authenticate(token) if token else None


async def require_key(request: Request) -> ApiKey:
    """Any known key, admin or invoke (401 otherwise): for the few routes an invoke key may
    read, which then decide by its scope."""
    store: Store = request.app.state.plane.store
    authorization = request.headers.get("authorization")
    if authorization is None:
        key = await _session_key(request)
    else:
        key = await asyncio.to_thread(authenticate, store, authorization)
    if key is None:
        raise ApiError(401, "UNAUTHENTICATED", "missing or unknown API key",
                       "send 'Authorization: Api-Key <key>' (truss api-keys create)")
    return key


async def require_admin(request: Request) -> ApiKey:
    """The dependency of every management route: 401 without a known key, 403 for an invoke key."""
    key = await require_key(request)
    if not key.is_admin:
        raise ApiError(403, "FORBIDDEN", "this API key may only call predict routes", {"scope": key.scope})
    return key


async def _session_key(request: Request) -> Optional[ApiKey]:
    """The key of the request's dashboard session, None without a live one; a change without
    the session's CSRF token is refused."""
    cookies = cookies_of(request)
    if cookies is None or COOKIE not in request.cookies:  # the common case: no thread hop
        return None
    signed_in = await asyncio.to_thread(cookies.signed_in, request)
    if signed_in is None:
        return None
    if request.method not in _READS and not csrf_matches(signed_in.session.csrf_token,
                                                         request.headers.get(CSRF_HEADER)):
        raise ApiError(403, "CSRF_FAILED", "this request carries the dashboard's session cookie but not its CSRF token",
                       "send the page's token as 'X-CSRF-Token' (or an 'Authorization: Api-Key' header instead)")
    return signed_in.key


class GatewayAuthorizer:
    """Admin keys may call any model; invoke keys only the models they name (all if none).

    Runs on every prediction, so a key that authenticated is remembered for CACHE_SECONDS
    (keyed by its sha256, never the token) with the models it was found allowed or refused:
    a cached request costs a hash and a dict lookup instead of a thread hop and a database
    read. A revocation through the store clears the cache at once (`api_keys.revocations`);
    the time limit covers changes the store object does not see (another process writing
    the same database). Unknown keys are not cached: they could fill the memory.
    """

    CACHE_SECONDS = 10.0
    _MAX_ENTRIES = 10_000

    def __init__(self, store: Store) -> None:
        self.store = store
        self._cache: dict[bytes, _Known] = {}
        self._revocations = store.api_keys.revocations

    async def __call__(self, authorization: Optional[str], model_id: str) -> Optional[Denial]:
        token = token_of(authorization)
        if token is None:
            return Denial(401, "missing or unknown API key")
        api_keys = self.store.api_keys
        if api_keys.revocations != self._revocations:
            self._cache.clear()
            self._revocations = api_keys.revocations
        digest = hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()
        now = time.monotonic()
        known = self._cache.get(digest)
        if known is None or known.expires < now:
            revocations = self._revocations
            key = await asyncio.to_thread(api_keys.authenticate, token)
            if key is None:
                self._cache.pop(digest, None)
                return Denial(401, "missing or unknown API key")
            known = _Known(key, now + self.CACHE_SECONDS)
            if api_keys.revocations == revocations:  # no revocation raced the lookup
                self._remember(digest, known, now)
        key = known.key
        if key.is_admin or not key.models:
            return None
        allowed = known.models.get(model_id)
        if allowed is None:
            model = await asyncio.to_thread(self.store.models.find, model_id)
            allowed = model is not None and key.may_invoke(model.name)
            if len(known.models) < self._MAX_ENTRIES:  # ids come from URLs: bound what a caller can make us keep
                known.models[model_id] = allowed
        return None if allowed else Denial(403, "this API key may not call this model")

    def _remember(self, digest: bytes, known: "_Known", now: float) -> None:
        if len(self._cache) >= self._MAX_ENTRIES:
            for stale in [d for d, k in self._cache.items() if k.expires < now]:
                del self._cache[stale]
            if len(self._cache) >= self._MAX_ENTRIES:
                self._cache.clear()
        self._cache[digest] = known


class _Known:
    """A key that authenticated, until `expires`, with what was decided per model id."""

    __slots__ = ("key", "expires", "models")

    def __init__(self, key: ApiKey, expires: float) -> None:
        self.key = key
        self.expires = expires
        self.models: dict[str, bool] = {}
