"""What the store refuses, in words a user can act on (the API maps them to 404 / 409)."""

from __future__ import annotations

from collections.abc import Iterable

from truss_cli.errors import TrussError


class StoreError(TrussError):
    """Base of the store's refusals. `code` is the API's `error_code` when the refusal has a
    name of its own (NAME_TAKEN, PRODUCTION_NOT_DELETABLE, ...); None means the generic one."""

    def __init__(self, message: str, hint: str | None = None, *, code: str | None = None):
        super().__init__(message, hint)
        self.code = code


class NotFound(StoreError):
    """No such row; the message lists what does exist, so a typo is fixed in one step."""

    def __init__(self, kind: str, wanted: str, existing: Iterable[str] = ()):
        names = sorted(existing)
        listing = ", ".join(names[:20]) + (f" (and {len(names) - 20} more)" if len(names) > 20 else "")
        hint = f"existing {kind}s: {listing}" if names else f"there are no {kind}s yet"
        super().__init__(f"no {kind} {wanted!r}", hint=hint)
        self.kind = kind
        self.wanted = wanted
        self.existing = names


class Conflict(StoreError):
    """The change contradicts a row that exists (a taken name, a build already claimed)."""


class NewerDatabase(StoreError):
    """The database was migrated by a newer truss-cli; going on could corrupt it."""
