"""`truss push --watch` / `truss watch` without the printing: the development deployment,
kept in step with a model directory while the user edits it.

- `truss push --watch` uploads the directory as `truss push` does (client/push.py: only what
  the remote lacks) and creates or reuses the development deployment (`Api.push_development`);
  `find_development` attaches to an existing one (`truss watch`).
- `wait_serving` waits until it serves (waking it when it sleeps and the session keeps it awake).
- `WatchSession.run` sends local changes made while nothing watched first (the remote's
  manifest against the directory), then one patch per batch of saves: a watcher thread turns
  file events into Deltas (client/watch.py) and queues them; this thread sends one patch at a
  time, and batches that arrive while a patch is in flight are folded (`Delta.then`) into
  the next one, so a burst of saves costs one sync, not one per save.
- A sync answered `rebuild` serves later: a follower thread (client/rebuilds.py) reads the
  rebuild's progress meanwhile (`on_rebuild_phase`) and hands its end to `on_result` as one
  more `SyncResult` (`rebuilt` / `failed` / `superseded`); saves go on being sent meanwhile:
  they stage on top of the tree being rebuilt and their sync answers `deferred`; when the
  rebuild ends the session syncs them (the control plane does too: whichever comes second
  answers with what it finds, `none` when the other synced it), so they get a line of their
  own with the time from their save.
- A keep-awake thread POSTs the wake route every 60 s (unless the user lets it sleep), so the
  idle timer of the control plane does not scale the deployment to zero while someone edits.

Each sync ends in one `SyncResult` handed to `on_result` (from the sending thread; a
rebuild's end from the follower's). No Typer or rich here.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from truss_cli.client.api import Api, ApiError
from truss_cli.client.patches import PatchSender, SyncResult
from truss_cli.client.rebuilds import POLL_SECONDS, RebuildFollower, RebuildPhase
from truss_cli.client.waiting import wait_for_status
from truss_cli.client.watch import Batch, watch_tree
from truss_cli.config import load_config
from truss_cli.errors import TrussError
from truss_cli.incremental_tree import IncrementalTree
from truss_cli.sync.patch import Delta

DEVELOPMENT = "development"
KEEP_AWAKE_SECONDS = 60.0
# How often the sending thread looks at the stop flag while no batch comes.
_POLL_SECONDS = 0.5


class NoDevelopmentDeployment(TrussError):
    pass


def find_development(api: Api, model_ref: str) -> dict[str, Any]:
    try:
        return api.deployment(model_ref, DEVELOPMENT)
    except ApiError as exc:
        if exc.status != 404:
            raise
        raise NoDevelopmentDeployment(
            f"model {model_ref} has no development deployment to watch ({exc.message})",
            hint="run `truss push --watch` first",
        ) from None


def wait_serving(
    api: Api, deployment: dict[str, Any], keep_awake: bool, on_status: Callable[[dict[str, Any]], None] | None = None
) -> dict[str, Any]:
    """Wait until the deployment is ACTIVE; one scaled to zero is woken when the session keeps
    it awake, else left asleep (its patches are then deferred to its next start)."""
    model_id, deployment_id = str(deployment["model_id"]), str(deployment["id"])
    until = ["ACTIVE"] if keep_awake else ["ACTIVE", "SCALED_TO_ZERO"]
    if keep_awake and deployment.get("status") == "SCALED_TO_ZERO":
        api.wake(model_id)
    return wait_for_status(api, model_id, deployment_id, until=until, on_status=on_status)


def model_name_of(model_dir: Path, model_name: str | None) -> str:
    """The model a directory deploys to, as `truss push` names it."""
    if model_name:
        return model_name
    return load_config(model_dir).config.model_name or model_dir.resolve().name


def external_dirs_of(model_dir: Path) -> list[Path]:
    config = load_config(model_dir).config
    return [(model_dir / path).resolve() for path in config.external_package_dirs]


@dataclass
class _Pending:
    """Batches folded into the next patch."""

    delta: Delta
    since: float | None  # when the first of them was saved (handed over by the watcher)
    errors: list[TrussError]
    sync_deferred: bool = False  # a rebuild ended: sync what was deferred behind it


@dataclass
class _Deferred:
    """Saves whose sync answered `deferred` behind a rebuild, not synced since."""

    files: list[str]
    since: float | None


# Queued by the rebuild follower when a rebuild ends with saves deferred behind it.
_SYNC_DEFERRED = "sync-deferred"


class WatchSession:
    """Keeps the development deployment `deployment` in step with `model_dir` until stopped."""

    def __init__(
        self,
        api: Api,
        deployment: dict[str, Any],
        model_dir: Path,
        on_result: Callable[[SyncResult], None],
        hot_reload: bool = True,
        keep_awake: bool = True,
        on_tree_error: Callable[[TrussError], None] | None = None,
        keep_awake_seconds: float = KEEP_AWAKE_SECONDS,
        on_ready: Callable[[], None] | None = None,
        on_rebuild_phase: Callable[[RebuildPhase], None] | None = None,
        rebuild_poll_seconds: float = POLL_SECONDS,
    ) -> None:
        self._api = api
        self._on_ready = on_ready or (lambda: None)
        self.model_id = str(deployment["model_id"])
        self.deployment_id = str(deployment["id"])
        self._tree = IncrementalTree(model_dir, external_dirs_of(model_dir))
        self._on_result = on_result
        self._on_tree_error = on_tree_error or (lambda error: None)
        self._keep_awake = keep_awake
        self._keep_awake_seconds = keep_awake_seconds
        # The watcher thread advances the tree; a rescan from this thread (the first sync,
        # a stale base) must not run at the same time.
        self._tree_lock = threading.Lock()
        self._sender = PatchSender(
            api, self.model_id, self.deployment_id, self._tree, "auto" if hot_reload else "off",
            tree_lock=self._tree_lock,
        )
        self._rebuilds = RebuildFollower(
            api, self.model_id, self.deployment_id, on_phase=on_rebuild_phase or (lambda phase: None),
            on_end=self._rebuild_ended, poll_seconds=rebuild_poll_seconds,
        )
        self._deferred: _Deferred | None = None
        # The last sync that was not deferred answered `rebuild`: a `deferred` now waits for it.
        self._after_rebuild = False
        # Each batch is tagged with the sender's refresh count when it was computed: a rescan
        # supersedes the batches computed before it (they hold older states of their paths).
        self._batches: queue.Queue[tuple[int, Batch] | BaseException | str] = queue.Queue()
        self._stop = threading.Event()
        self._watching = threading.Event()  # the watcher has handed over its first batch
        self._threads: list[threading.Thread] = []

    def run(self) -> None:
        """Sync until `stop()` (or KeyboardInterrupt in the calling thread); raises what the
        watcher or the control plane raise that a retry cannot fix."""
        try:
            if self._keep_awake:
                self._start_thread(self._keep_awake_loop, "truss-keep-awake")
            self._start_thread(lambda: self._rebuilds.run(self._stop), "truss-rebuild")
            # Watch first, rescan second: a save between the two is then seen by one or the
            # other (the batches computed before the rescan are dropped as folded into it).
            watcher = self._start_thread(self._watch, "truss-watch")
            while not self._watching.wait(_POLL_SECONDS) and watcher.is_alive() and not self._stop.is_set():
                pass
            first = self._sender.refresh()
            self._follow_rebuild_under_way()
            if first:
                self._emit(self._sender.send(first, since=None), since=None)
            elif self._sender.unsynced:
                self._emit(self._sender.sync_pending(), since=None)
            self._on_ready()  # from here on, every save is a sync of its own
            while not self._stop.is_set():
                pending = self._next_pending()
                if pending is None:
                    continue
                for error in pending.errors:
                    self._on_tree_error(error)
                if pending.delta:
                    self._emit(self._send(pending), since=pending.since)
                elif pending.sync_deferred and self._deferred is not None:
                    self._emit(self._sync_deferred(self._deferred), since=self._deferred.since)
        finally:
            self.stop()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads = []

    # -- the sending thread -------------------------------------------------------------------

    def _next_pending(self) -> _Pending | None:
        """Wait for a batch, then fold in every batch queued behind it."""
        try:
            item = self._batches.get(timeout=_POLL_SECONDS)
        except queue.Empty:
            return None
        pending = _Pending(Delta(), None, [])
        while True:
            if isinstance(item, BaseException):
                raise item
            if item == _SYNC_DEFERRED:
                pending.sync_deferred = True
                item = self._next_queued()
                if item is None:
                    return pending
                continue
            assert not isinstance(item, str)
            refreshes, item = item
            if refreshes != self._sender.refreshes:
                item = replace(item, delta=Delta())  # folded into the rescan already
            if item.error is not None:
                pending.errors.append(item.error)
            if item.delta:
                base = self._sender.remote
                pending.delta = pending.delta.then(item.delta, base)
                pending.since = item.received if pending.since is None else pending.since
            item = self._next_queued()
            if item is None:
                return pending

    def _next_queued(self) -> tuple[int, Batch] | BaseException | str | None:
        try:
            return self._batches.get_nowait()
        except queue.Empty:
            return None

    def _send(self, pending: _Pending) -> SyncResult:
        return self._sender.send(pending.delta, since=pending.since)

    def _emit(self, result: SyncResult, since: float | None) -> None:
        """Hand a sync's result over, and note what it leaves to come later."""
        if result.action == "deferred" and self._after_rebuild:
            # Deferred behind a rebuild (not a sleeping deployment's start): synced at its end.
            before = self._deferred
            files = sorted(set(result.files) | set(before.files if before else []))
            self._deferred = _Deferred(files, before.since if before is not None else since)
            if result.tree_hash:
                self._rebuilds.later(result.tree_hash)
            if self._rebuilds.following is None:  # it ended while this sync was answered
                self._batches.put(_SYNC_DEFERRED)
        elif self._deferred is not None:
            # Synced (or refused) with this sync's files: they are part of what it reports.
            result.files = sorted(set(result.files) | set(self._deferred.files))
            self._deferred = None
        self._on_result(result)
        if result.action == "rebuild" and result.tree_hash:
            self._after_rebuild = True
            self._rebuilds.follow(result.tree_hash, result.reason, result.files, since)
        elif result.action != "deferred":
            self._after_rebuild = False

    def _sync_deferred(self, deferred: _Deferred) -> SyncResult:
        result = self._sender.sync_pending(deferred.files, deferred.since)
        if result.action == "none":  # the control plane synced them first: they serve
            result.action, result.reason = "synced", "synced by the control plane when the rebuild ended"
        return result

    def _rebuild_ended(self, result: SyncResult) -> None:
        """The follower's thread: the rebuild's end, then the saves deferred behind it."""
        self._on_result(result)
        if self._deferred is not None:
            self._batches.put(_SYNC_DEFERRED)

    def _follow_rebuild_under_way(self) -> None:
        """A session started while a rebuild runs (the last one's) reports its end too."""
        rebuild = self._sender.rebuild
        if rebuild and rebuild.get("phase") != "failed" and rebuild.get("tree_hash"):
            self._after_rebuild = True
            self._rebuilds.follow(str(rebuild["tree_hash"]), str(rebuild.get("reason") or ""), [], None, str(rebuild.get("phase") or "building"))

    # -- the other threads --------------------------------------------------------------------

    def _start_thread(self, target: Callable[[], None], name: str) -> threading.Thread:
        thread = threading.Thread(target=target, name=name, daemon=True)
        self._threads.append(thread)
        thread.start()
        return thread

    def _watch(self) -> None:
        try:
            batches = watch_tree(self._tree, stop_event=self._stop, yield_idle=True)
            while not self._stop.is_set():
                with self._tree_lock:
                    batch = next(batches, None)
                    refreshes = self._sender.refreshes
                self._watching.set()  # its events are registered: nothing is missed from now on
                if batch is None:
                    return
                if batch.delta or batch.error:
                    self._batches.put((refreshes, batch))
        except BaseException as exc:  # handed to the sending thread, which raises it
            self._batches.put(exc)

    def _keep_awake_loop(self) -> None:
        while not self._stop.wait(self._keep_awake_seconds):
            try:
                self._api.wake(self.model_id, DEVELOPMENT)
            except TrussError:
                pass  # a blip: the next call, a minute later, tries again; the syncs say more

