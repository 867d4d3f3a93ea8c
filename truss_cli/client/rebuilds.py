"""Following a development rebuild until its code serves (docs/live-reload.md C2).

A sync that answers `action: "rebuild"` returns at once; the control plane then builds the
staged tree and starts a replica on it while the old replica keeps serving. Its progress is
in `GET .../patches/state`'s `rebuild` (`{"tree_hash", "reason", "phase": "building" |
"deploying" | "switching" | "failed", "error", "build_log_tail"}`), which is null again once
the gateway routes to the rebuilt tree (`running_patch_point.hash == tree_hash` and no
rebuild of it recorded).

`RebuildFollower` polls that state on its own thread, so saves made during a rebuild are sent
as patches as usual by the session's thread. It reports each phase it sees (`on_phase`) and,
once per rebuild, how it ended (`on_end`, a `SyncResult`):
- `rebuilt`: the rebuilt tree serves; `ms` from the save that asked for it;
- `failed` (phase `rebuild`): the build or the new replica failed, `error` and
  `build_log_tail` say why; the old code keeps serving;
- `superseded`: the deployment moved on to another tree first (another client, or a rebuild
  of the saves deferred behind this one replaced its failed record before a poll saw it).

Saves made during a rebuild stage on top of it and their syncs answer `deferred`; the
control plane syncs them itself when the rebuild ends, often before the next poll. So the
trees they staged are `later(tree_hash)`: the running tree being one of them also means
this rebuild served (a failed one keeps its record, phase failed, until a new patch or
rebuild replaces it).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from truss_cli.client.api import Api
from truss_cli.client.patches import SyncResult
from truss_cli.errors import TrussError

POLL_SECONDS = 0.5  # a rebuild takes tens of seconds: half a second late is not noticed


@dataclass(frozen=True)
class RebuildPhase:
    """A rebuild's phase as last seen: building | deploying."""

    tree_hash: str
    phase: str
    reason: str
    files: list[str]


@dataclass
class _Followed:
    tree_hash: str
    reason: str
    files: list[str]
    since: float | None  # time.monotonic() of the save that asked for it
    phase: str | None = None  # the last phase reported
    later: set[str] = field(default_factory=set)  # trees staged on top of it (deferred syncs)


class RebuildFollower:
    """Follows at most one rebuild at a time: the latest one a sync answered."""

    def __init__(
        self,
        api: Api,
        model_ref: str,
        deployment_ref: str,
        on_phase: Callable[[RebuildPhase], None],
        on_end: Callable[[SyncResult], None],
        poll_seconds: float = POLL_SECONDS,
    ) -> None:
        self._api = api
        self._model = model_ref
        self._deployment = deployment_ref
        self._on_phase = on_phase
        self._on_end = on_end
        self._poll_seconds = poll_seconds
        self._lock = threading.Lock()
        self._followed: _Followed | None = None
        self._wake = threading.Event()

    @property
    def following(self) -> str | None:
        with self._lock:
            return None if self._followed is None else self._followed.tree_hash

    def follow(self, tree_hash: str, reason: str, files: list[str], since: float | None, phase: str | None = None) -> None:
        """Follow the rebuild of `tree_hash`; one followed until now ends as superseded."""
        with self._lock:
            previous = self._followed
            if previous is not None and previous.tree_hash == tree_hash:
                return
            current = self._followed = _Followed(tree_hash, reason, files, since)
        if previous is not None:
            self._on_end(_ended(previous, "superseded", "a later save changed the tree before this rebuild served"))
        self._report(current, phase or "building")
        self._wake.set()

    def later(self, tree_hash: str) -> None:
        """A tree staged on top of the rebuild followed (its sync was deferred behind it)."""
        with self._lock:
            if self._followed is not None:
                self._followed.later.add(tree_hash)

    def run(self, stop: threading.Event) -> None:
        """Poll until `stop`; a failed poll is retried (a blip), never raised."""
        while not stop.is_set():
            self._wake.wait(self._poll_seconds)
            self._wake.clear()
            with self._lock:
                followed = self._followed
            if stop.is_set() or followed is None:
                continue
            try:
                state = self._api.patch_state(self._model, self._deployment)
            except TrussError:
                continue
            self._observe(state, followed)

    def _observe(self, state: dict[str, Any], followed: _Followed) -> None:
        """Move the followed rebuild on by one read of `patches/state`, made while `followed`
        was the one followed (a state read before a newer rebuild was asked for says nothing
        about it: it would look superseded)."""
        running = (state.get("running_patch_point") or {}).get("hash")
        rebuild = state.get("rebuild") if isinstance(state.get("rebuild"), dict) else None
        with self._lock:
            if self._followed is not followed:
                return
            ended: SyncResult | None = None
            ours = rebuild is not None and rebuild.get("tree_hash") == followed.tree_hash
            if ours and rebuild is not None and rebuild.get("phase") == "failed":
                ended = _ended(followed, "failed", str(rebuild.get("error") or "the rebuild failed"))
                tail = rebuild.get("build_log_tail")
                ended.build_log_tail = [str(line) for line in tail] if isinstance(tail, list) else None
            elif ours and rebuild is not None and rebuild.get("phase") == "switching":
                pass  # built and ready: served once the gateway routes to it
            elif running == followed.tree_hash or running in followed.later:
                ended = _ended(followed, "rebuilt", "")
            elif not ours:
                ended = _ended(followed, "superseded", "the deployment moved on to another tree before this rebuild was seen serving")
            if ended is not None:
                self._followed = None
        if ended is not None:
            self._on_end(ended)
        elif rebuild is not None:
            self._report(followed, str(rebuild.get("phase") or "building"))

    def _report(self, followed: _Followed, phase: str) -> None:
        if followed.phase == phase:
            return
        followed.phase = phase
        self._on_phase(RebuildPhase(followed.tree_hash, phase, followed.reason, followed.files))


def _ended(followed: _Followed, action: str, message: str) -> SyncResult:
    ms = None if followed.since is None or action != "rebuilt" else (time.monotonic() - followed.since) * 1000
    failed = action == "failed"
    return SyncResult(
        files=followed.files,
        action=action,
        reason=followed.reason if action == "rebuilt" else message,
        ms=ms,
        tree_hash=followed.tree_hash,
        error=message if failed else None,
        phase="rebuild" if failed else None,
    )
