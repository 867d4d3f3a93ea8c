"""Sending the watched tree's changes to the development deployment as patches.

`PatchSender` keeps the tree the control plane holds (`remote`: its pending-else-running
manifest, as this client believes it) and turns a Delta of the local tree into one
`POST .../patches?sync=true` (stage, then sync): an envelope (sync/envelope.py) holding the
Patch and the contents of the files it puts. The answers it handles (docs/live-reload.md):

- 409 `STALE_PATCH_BASE` (someone else patched, or a patch of ours was lost) and 400
  `TREE_HASH_MISMATCH`: the local tree is rescanned fully (events may have been missed),
  the remote's manifest read again (`GET .../patches/state?manifest=1`), the delta computed
  again from both, and sent again;
- 503 `REPLICA_UNAVAILABLE` (a replica starting): wait (Retry-After, else a backoff) and ask
  for the sync again; the patch is staged already when the pending hash says so;
- 422 `PATCH_FAILED`: the model's code failed (syntax, import, load) or its requirements
  did not install (phase `requirements`, uv's output as the traceback); the old code keeps
  serving, the patch stays pending, so the next save builds on it. The result carries the
  model's traceback, its tree-relative file names turned into local paths (client/tracebacks.py);
- 200 `action: "requirements"` carries what changed (`{"added", "removed", "changed"}`);
  `action: "rebuild"` means the new code serves later: client/rebuilds.py follows it.

No Typer or rich: the session (client/dev_session.py) decides what to print.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from truss_cli.client.api import Api, ApiError
from truss_cli.client.tracebacks import localize
from truss_cli.errors import TrussError
from truss_cli.incremental_tree import EXTERNAL_PREFIX, IncrementalTree
from truss_cli.sync.envelope import envelope_bytes
from truss_cli.sync.manifest import LINK_MODE, Entry, Manifest, link_entry, sha256_file
from truss_cli.sync.patch import Delta, Patch, diff

# Retries of one sync: a replica restarting answers 503 for seconds, not minutes.
MAX_UNAVAILABLE_RETRIES = 30
FIRST_RETRY_SECONDS = 0.25
LAST_RETRY_SECONDS = 2.0
# A stale base twice in a row means someone else is patching too: say so rather than loop.
MAX_STALE_RETRIES = 3
# Above this, ask the remote which contents it lacks first (a rename of a large file, a
# revert, a file the first push sent already, are then not sent again).
ASK_MISSING_ABOVE_BYTES = 1 << 20

# The new code is not serving when these answers come (a rebuild, a sleeping deployment).
SERVED_LATER = ("rebuild", "deferred")
_RESYNC_CODES = ("STALE_PATCH_BASE", "TREE_HASH_MISMATCH", "MISSING_BLOB")


@dataclass
class SyncResult:
    """One sync as a user sees it: which files, what the replica did, how long from the save."""

    files: list[str]  # the paths the patch changed (deleted ones included)
    # A sync: hot_swap | restart | requirements | none | deferred | rebuild | failed; and
    # `synced` for saves deferred behind a rebuild that the control plane synced itself.
    # The end of a rebuild (client/rebuilds.py): rebuilt | superseded | failed (phase "rebuild").
    action: str
    reason: str = ""
    ms: float | None = None  # from the (first) save to the answer, when the new code serves then
    tree_hash: str | None = None
    error: str | None = None
    phase: str | None = None  # of a 422: syntax | import | load | config | requirements; "rebuild"
    traceback: str | None = None
    server_ms: dict[str, Any] = field(default_factory=dict)
    needs_full_deploy_reason: str | None = None
    requirements: dict[str, list[str]] | None = None  # {"added", "removed", "changed"}
    # Docker runtime: the system packages a requirements sync installed or left behind.
    system_packages: dict[str, list[str]] | None = None  # {"added", "removed"}
    build_log_tail: list[str] | None = None  # of a failed rebuild

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "files": self.files, "action": self.action, "reason": self.reason,
            "ms": None if self.ms is None else round(self.ms, 1), "tree_hash": self.tree_hash,
            "error": self.error, "phase": self.phase, "traceback": self.traceback,
            "server_ms": self.server_ms, "needs_full_deploy_reason": self.needs_full_deploy_reason,
            "requirements": self.requirements, "system_packages": self.system_packages,
            "build_log_tail": self.build_log_tail,
        }


class _Unavailable(Exception):
    """A 503 before the patch was staged: send it again after a pause."""

    def __init__(self, error: ApiError) -> None:
        super().__init__(error.message)
        self.error = error


class _ContentChanged(Exception):
    """A file's bytes no longer match the digest the tree holds (saved again meanwhile)."""


class PatchSender:
    """Patches of `tree` to the development deployment `deployment_ref` of `model_ref`."""

    def __init__(
        self,
        api: Api,
        model_ref: str,
        deployment_ref: str,
        tree: IncrementalTree,
        hot_reload: str = "auto",
        sleep: Callable[[float], None] = time.sleep,
        tree_lock: AbstractContextManager[Any] | None = None,
    ) -> None:
        self._api = api
        self._model = model_ref
        self._deployment = deployment_ref
        self._tree = tree
        self._hot_reload = hot_reload
        self._sleep = sleep
        # Held while rescanning: a watcher thread advancing the same tree holds it too.
        self._tree_lock = tree_lock or nullcontext()
        self.remote = Manifest({})
        # The last state read had a pending patch point the replica does not run yet (and
        # that no rebuild in progress is bringing to it).
        self.unsynced = False
        # The last state read's `rebuild` (docs/live-reload.md C2), None when none runs.
        self.rebuild: dict[str, Any] | None = None
        self.refreshes = 0  # deltas computed before the last refresh are superseded by it

    def refresh(self) -> Delta:
        """Rescan the local tree, read the remote's tree, and return what differs: the
        first patch of a session (changes made while nothing watched), and the 409 path."""
        with self._tree_lock:
            self._tree.full_rescan()
            self.refreshes += 1
            local = self._tree.manifest
        state = self._api.patch_state(self._model, self._deployment, manifest=True)
        self.remote = _manifest_of(state.get("manifest"))
        pending = state.get("pending_patch_point") or {}
        running = state.get("running_patch_point") or {}
        rebuild = state.get("rebuild")
        self.rebuild = rebuild if isinstance(rebuild, dict) else None
        # A rebuild under way to the pending tree needs no sync (a sync could start it over).
        rebuilding = self.rebuild is not None and self.rebuild.get("phase") != "failed" and self.rebuild.get("tree_hash") == pending.get("hash")
        self.unsynced = bool(pending.get("hash")) and pending.get("hash") != running.get("hash") and not rebuilding
        return diff(self.remote, local)

    def sync_pending(self, files: list[str] | None = None, since: float | None = None) -> SyncResult:
        """Sync what is staged already (a session that ended before its sync, or a patch that
        failed: then the model's traceback shows again, which is where the user left off; or
        saves deferred behind a rebuild: `files` and `since` are theirs)."""
        files = files or []
        try:
            try:
                answer = self._api.sync_patches(self._model, self._deployment)
            except ApiError as exc:
                if exc.status != 503:
                    raise
                answer = self._sync_until_available(exc)
        except ApiError as exc:
            if exc.error_code == "PATCH_FAILED":
                return _failed(files, exc, since, self.local_path)
            raise
        self.unsynced = False
        return _succeeded(files, answer, since, self.remote)

    def send(self, delta: Delta, since: float | None = None) -> SyncResult:
        """Stage and sync `delta` (from `self.remote`), recovering from a stale base; `since`
        (time.monotonic() of the save) makes the result's `ms`."""
        files = sorted(delta)
        stale = unavailable = 0
        pause = FIRST_RETRY_SECONDS
        while True:
            try:
                answer = self._stage_and_sync(delta)
                break
            except _ContentChanged:
                delta = self.refresh()
            except _Unavailable as exc:
                unavailable += 1
                if unavailable > MAX_UNAVAILABLE_RETRIES:
                    raise exc.error from None
                self._sleep(exc.error.retry_after if exc.error.retry_after is not None else pause)
                pause = min(pause * 2, LAST_RETRY_SECONDS)
                continue
            except ApiError as exc:
                if exc.error_code == "PATCH_FAILED":
                    return _failed(files, exc, since, self.local_path)
                if exc.error_code not in _RESYNC_CODES:
                    raise
                stale += 1
                if stale > MAX_STALE_RETRIES:
                    raise TrussError(
                        f"the development deployment's tree keeps changing under this watch ({exc.message})",
                        hint="is another `truss watch` running for this model? Stop it, then watch again",
                    ) from None
                delta = self.refresh()
            files = sorted(set(files) | set(delta))
            if not delta:
                return SyncResult(files, "none", "the remote already has this tree", _ms(since), self.remote.tree_hash())
        return _succeeded(files, answer, since, self.remote)

    # -- one attempt --------------------------------------------------------------------------

    def _stage_and_sync(self, delta: Delta) -> dict[str, Any]:
        patch = Patch.between(self.remote, delta, self._hot_reload)
        body = envelope_bytes(patch.to_dict(), self._blobs(delta))
        try:
            answer = self._api.stage_patch(self._model, self._deployment, body, sync=True)
        except ApiError as exc:
            if exc.error_code == "PATCH_FAILED":
                self.remote = self.remote.with_changes(delta)  # staged: pending is ours
            if exc.status != 503:
                raise
            if not self._pending_is(patch.next_hash):
                raise _Unavailable(exc) from None
            self.remote = self.remote.with_changes(delta)
            return self._sync_until_available(exc)
        self.remote = self.remote.with_changes(delta)
        return answer

    def _sync_until_available(self, first: ApiError) -> dict[str, Any]:
        """Ask for the sync again while the replica is unavailable (starting, restarting)."""
        error, pause = first, FIRST_RETRY_SECONDS
        for _ in range(MAX_UNAVAILABLE_RETRIES):
            self._sleep(error.retry_after if error.retry_after is not None else pause)
            pause = min(pause * 2, LAST_RETRY_SECONDS)
            try:
                return self._api.sync_patches(self._model, self._deployment)
            except ApiError as exc:
                if exc.status != 503:
                    raise
                error = exc
        raise error

    def _pending_is(self, tree_hash: str) -> bool:
        state = self._api.patch_state(self._model, self._deployment)
        pending = state.get("pending_patch_point") or state.get("running_patch_point") or {}
        return pending.get("hash") == tree_hash

    def _blobs(self, delta: Delta) -> dict[str, bytes | Path]:
        """The contents of the files `delta` puts, checked against their digests now."""
        wanted: dict[str, tuple[str, Entry]] = {}
        for path, entry in delta.puts().items():
            wanted.setdefault(entry.sha256, (path, entry))
        sizes = {digest: self._size(path, entry) for digest, (path, entry) in wanted.items()}
        if sum(sizes.values()) > ASK_MISSING_ABOVE_BYTES:
            missing = set(self._api.missing_blobs(sorted(wanted)))
            wanted = {digest: item for digest, item in wanted.items() if digest in missing}
        return {digest: self._content(path, entry) for digest, (path, entry) in wanted.items()}

    def local_path(self, path: str) -> Path:
        """Where a path of the tree (as patches name it) is on this machine."""
        roots = self._tree.roots
        if len(roots) > 1 and path.startswith(EXTERNAL_PREFIX + "/"):
            index, _, rest = path[len(EXTERNAL_PREFIX) + 1 :].partition("/")
            return roots[int(index) + 1] / rest
        return roots[0] / path

    def _size(self, path: str, entry: Entry) -> int:
        if entry.mode == LINK_MODE:
            return 0
        try:
            return self.local_path(path).stat().st_size
        except OSError:
            raise _ContentChanged(path) from None

    def _content(self, path: str, entry: Entry) -> bytes | Path:
        local = self.local_path(path)
        try:
            if entry.mode == LINK_MODE:
                target = os.readlink(local)
                if link_entry(target) != entry:
                    raise _ContentChanged(path)
                return target.encode("utf-8", "surrogateescape")
            if local.stat().st_size > ASK_MISSING_ABOVE_BYTES:
                # Streamed from the file; if it changes before it is read, the receiver
                # refuses the digest and this side rescans on the 400.
                if sha256_file(local).hex() != entry.sha256:
                    raise _ContentChanged(path)
                return local
            data = local.read_bytes()
        except OSError:
            raise _ContentChanged(path) from None
        if hashlib.sha256(data).hexdigest() != entry.sha256:
            raise _ContentChanged(path)
        return data


def _manifest_of(files: Any) -> Manifest:
    if not isinstance(files, dict):
        raise TrussError("the control plane's patch state carries no manifest (is it older than `truss watch`?)")
    return Manifest({path: Entry(item["sha256"], item["mode"]) for path, item in files.items()})


def _succeeded(files: list[str], answer: dict[str, Any], since: float | None, remote: Manifest) -> SyncResult:
    action = str(answer.get("action") or "none")
    return SyncResult(
        files=files,
        action=action,
        reason=str(answer.get("reason") or ""),
        ms=None if action in SERVED_LATER else _ms(since),
        tree_hash=answer.get("tree_hash") or remote.tree_hash(),
        server_ms=answer.get("ms") if isinstance(answer.get("ms"), dict) else {},
        needs_full_deploy_reason=answer.get("needs_full_deploy_reason"),
        requirements=_requirements_of(answer.get("requirements")),
        system_packages=_system_packages_of(answer.get("system_packages")),
    )


def _requirements_of(value: Any) -> dict[str, list[str]] | None:
    if not isinstance(value, dict):
        return None
    return {key: [str(item) for item in value.get(key) or []] for key in ("added", "removed", "changed")}


def _system_packages_of(value: Any) -> dict[str, list[str]] | None:
    if not isinstance(value, dict):
        return None
    return {key: [str(item) for item in value.get(key) or []] for key in ("added", "removed")}


def _failed(files: list[str], exc: ApiError, since: float | None, local_path: Callable[[str], Path]) -> SyncResult:
    detail = exc.detail if isinstance(exc.detail, dict) else {}
    summary = localize(str(detail.get("summary") or exc.message), local_path) or exc.message
    return SyncResult(
        files=files,
        action="failed",
        reason=summary,
        ms=_ms(since),
        error=summary,
        phase=detail.get("phase"),
        traceback=localize(detail.get("traceback"), local_path),
    )


def _ms(since: float | None) -> float | None:
    return None if since is None else (time.monotonic() - since) * 1000
