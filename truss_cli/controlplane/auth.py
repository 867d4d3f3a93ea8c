"""Who is calling: `Authorization: Api-Key <key>` or `Bearer <key>`, checked against the store.

The store compares hashes (api_keys.authenticate); nothing here ever logs or returns a key.
Management routes depend on `require_admin`; the gateway asks `GatewayAuthorizer`, which
also scopes an invoke key to the models it names.
"""

from __future__ import annotations

import asyncio
from typing import Optional

from fastapi import Request

from truss_cli.controlplane.errors import ApiError
from truss_cli.controlplane.gateway import Denial
from truss_cli.controlplane.store import ApiKey, Store

_SCHEMES = ("api-key", "bearer")


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
    key = await asyncio.to_thread(authenticate, store, request.headers.get("authorization"))
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


class GatewayAuthorizer:
    """Admin keys may call any model; invoke keys only the models they name (all if none)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def __call__(self, authorization: Optional[str], model_id: str) -> Optional[Denial]:
        key = await asyncio.to_thread(authenticate, self.store, authorization)
        if key is None:
            return Denial(401, "missing or unknown API key")
        if key.is_admin or not key.models:
            return None
        model = await asyncio.to_thread(self.store.models.find, model_id)
        if model is None or not key.may_invoke(model.name):
            return Denial(403, "this API key may not call this model")
        return None
