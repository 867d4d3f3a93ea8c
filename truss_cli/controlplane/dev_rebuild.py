"""A development deployment's rebuild without downtime (docs/live-reload.md, contract C2).

A sync whose change the replica cannot take (a `python_version` or `system_packages`
change; requirements on a runtime that builds no environments) records the rebuild on the
deployment (`patch_points.begin_rebuild`, phase "building") and hands it here. Meanwhile the
old replica keeps serving the running tree and the deployment stays ACTIVE:

1. building: `runtime.prepare` for the staged tree (the deployment's build log);
2. deploying: a new replica starts from that artifact at that tree, unrecorded, so the
   reconciler neither routes to it nor counts it;
3. once it is ready, one transaction makes the tree running and the artifact the
   deployment's (`patch_points.rebuilt`), the new replica is recorded (the gateway routes
   to both for a moment), then the old rows are retired: unrouted first, then stopped
   gracefully (their in-flight requests finish).

A build or start that fails stops what it started and records phase "failed" with the error
and the build log's tail; the old replica serves on, the staged tree is marked refused (the
next patch builds on it and clears the failure). A patch staged during a rebuild waits: its
sync answers `deferred`, and it is synced when the rebuild ends.

The record is in the store: a control plane restarted in the middle starts the rebuild again
(`resume`); a replica it had started and not recorded is stopped by `Reconciler.adopt`. Builds
here do not queue behind the build workers (one rebuild per development deployment at a time).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Optional

from truss_cli.config import ConfigError, load_config
from truss_cli.controlplane.builds import build_log_path
from truss_cli.controlplane.reconciler import STOPPED, Reconciler
from truss_cli.controlplane.runtimes.base import FAILED, GONE, Artifact, BuildError, BuildRequest, Handle, Runtime
from truss_cli.controlplane.runtimes.logfile import LogFile
from truss_cli.controlplane.store import Deployment, NotFound, Store, states
from truss_cli.controlplane.trees import Trees

logger = logging.getLogger("truss.controlplane.dev_rebuild")

BUILDING, DEPLOYING, FAILED_PHASE = "building", "deploying", "failed"
LOG_TAIL_LINES = 20
READY_TIMEOUT_SECONDS = 900.0  # load() may fetch weights; the old replica serves meanwhile
_POLL_SECONDS = 0.1
SYNC_ATTEMPTS = 30  # a second apart: the rebuilt replica is ready, so a 503 is brief


class DevelopmentRebuilds:
    def __init__(self, store: Store, runtime: Runtime, trees: Trees, reconciler: Reconciler,
                 sync: Callable[[str], Awaitable[tuple[int, dict[str, Any], dict[str, str]]]]) -> None:
        """`sync`: the Syncer's, called when a rebuild ends with a newer tree staged on top."""
        self.store = store
        self.runtime = runtime
        self.trees = trees
        self.reconciler = reconciler
        self.sync = sync
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def start(self, deployment_id: str, tree_hash: str) -> None:
        """Run the recorded rebuild of `tree_hash` (the event loop's thread), after the one
        of the same deployment still finishing, if any (its end may be what recorded this one)."""
        previous = self._tasks.get(deployment_id)
        self._tasks[deployment_id] = asyncio.get_running_loop().create_task(
            self._after(previous, deployment_id, tree_hash))

    async def _after(self, previous: Optional[asyncio.Task[None]], deployment_id: str, tree_hash: str) -> None:
        if previous is not None and not previous.done():
            await asyncio.wait([previous])
        if await asyncio.to_thread(self._still_wanted, deployment_id, tree_hash):
            await self._run(deployment_id, tree_hash)

    async def resume(self) -> None:
        """At start: rebuilds a previous control plane left building or deploying run again."""
        for deployment in await asyncio.to_thread(self.store.patch_points.rebuilds_in_progress):
            tree_hash = str((deployment.rebuild or {}).get("tree_hash"))
            await asyncio.to_thread(self.store.patch_points.rebuild_phase, deployment.id, tree_hash, BUILDING)
            self.start(deployment.id, tree_hash)

    async def stop(self) -> None:
        for task in self._tasks.values():
            task.cancel()

    # -- one rebuild ----------------------------------------------------------------------

    async def _run(self, deployment_id: str, tree_hash: str) -> None:
        log_path = build_log_path(self.store, deployment_id)
        handle: Optional[Handle] = None
        try:
            artifact, row_config = await asyncio.to_thread(self._build, deployment_id, tree_hash, log_path)
            if not await asyncio.to_thread(self.store.patch_points.rebuild_phase, deployment_id, tree_hash, DEPLOYING):
                return
            handle = await asyncio.to_thread(self._start_replica, deployment_id, tree_hash, artifact, row_config)
            cause = await self._wait_ready(deployment_id, tree_hash, handle)
            if cause is not None:
                raise BuildError(cause)
            deployment = await asyncio.to_thread(self.store.patch_points.rebuilt, deployment_id, tree_hash,
                                                 artifact.to_dict(), row_config)
            if deployment is None:
                return  # deleted or superseded meanwhile (the finally stops the replica)
            if deployment.desired_state != states.DESIRED_ACTIVE:
                await asyncio.to_thread(self.store.patch_points.switched, deployment_id, tree_hash)
                return  # deactivated meanwhile: its next replica starts at the new tree
            await self._switch(deployment, handle)
            handle = None  # the deployment's replica now
            await asyncio.to_thread(self.store.patch_points.switched, deployment_id, tree_hash)
            with LogFile(log_path) as log:
                log(f"rebuilt: the development replica serves tree {tree_hash[:12]}")
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # BuildError, ConfigError, a bug: the old replica serves on
            if not isinstance(exc, (BuildError, ConfigError)):
                logger.exception("the rebuild of deployment %s failed", deployment_id)
            error = str(exc).strip() or type(exc).__name__
            with LogFile(log_path) as log:
                log(f"rebuild failed: {error}; the previous tree keeps serving")
            await asyncio.to_thread(self.store.patch_points.rebuild_phase, deployment_id, tree_hash, FAILED_PHASE,
                                    error, _tail(log_path))
            return
        finally:
            if handle is not None:
                await asyncio.to_thread(self.runtime.stop, handle, 0)
        await self._sync_staged(deployment_id)

    async def _sync_staged(self, deployment_id: str) -> None:
        """A tree staged during the rebuild is sent now (retried while the replica is not
        ready); its answer is the deployment's log, as the client's own sync would not see it."""
        for _ in range(SYNC_ATTEMPTS):
            current = await asyncio.to_thread(self.store.deployments.get_by_id, deployment_id)
            if not current.pending_tree_hash or current.pending_failed:
                return
            status, body, _ = await self.sync(deployment_id)
            if status != 503:
                with LogFile(build_log_path(self.store, deployment_id)) as log:
                    log(f"synced the tree staged during the rebuild: {status} {body.get('action') or body.get('error')}")
                return
            await asyncio.sleep(1.0)

    def _build(self, deployment_id: str, tree_hash: str, log_path: Path) -> tuple[Artifact, dict[str, Any]]:
        deployment = self.store.deployments.get_by_id(deployment_id)
        model_dir = self.trees.tree(tree_hash)
        config = load_config(model_dir).config
        reason = (deployment.rebuild or {}).get("reason", "")
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with LogFile(log_path) as log:
            log(f"rebuilding the development deployment for tree {tree_hash[:12]} ({reason}); "
                "the previous tree serves meanwhile")
        artifact = self.runtime.prepare(BuildRequest(deployment_id, model_dir, config, log_path,
                                                           deployment.model_id, deployment.name))
        row_config = {**deployment.config, "secret_names": sorted(config.secrets),
                      "model_metadata": json.loads(json.dumps(dict(config.model_metadata or {}), default=str))}
        return artifact, row_config

    def _start_replica(self, deployment_id: str, tree_hash: str, artifact: Artifact, row_config: dict[str, Any]) -> Handle:
        deployment = self.store.deployments.get_by_id(deployment_id)
        # The deployment as it will be once rebuilt: its spec is the one a restart would use.
        rebuilt = dataclasses.replace(deployment, build_artifact=artifact.to_dict(), config=row_config,
                                      running_tree_hash=tree_hash, pending_tree_hash=None, rebuild=None)
        return self.runtime.start(self.reconciler.replica_spec(rebuilt))

    async def _wait_ready(self, deployment_id: str, tree_hash: str, handle: Handle) -> Optional[str]:
        """None once the new replica is ready; else why it will not be."""
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        polls = 0
        while time.monotonic() < deadline:
            observed = await asyncio.to_thread(self.runtime.status, handle)
            if observed.is_ready:
                return None
            if observed.phase in (FAILED, GONE):
                detail = observed.summary or (f"the replica exited (code {observed.exit_code})"
                                              if observed.exit_code is not None else "the replica is gone")
                return f"the rebuilt replica failed to start: {detail}"
            polls += 1
            if polls % 20 == 0 and not await asyncio.to_thread(self._still_wanted, deployment_id, tree_hash):
                return "the rebuild was superseded"
            await asyncio.sleep(_POLL_SECONDS)
        return f"the rebuilt replica was not ready after {READY_TIMEOUT_SECONDS:g} s"

    def _still_wanted(self, deployment_id: str, tree_hash: str) -> bool:
        try:
            deployment = self.store.deployments.get_by_id(deployment_id)
        except Exception:
            return False
        return bool(deployment.rebuild) and (deployment.rebuild or {}).get("tree_hash") == tree_hash

    async def _switch(self, deployment: Deployment, handle: Handle) -> None:
        """Route to the new replica, then retire the old ones (unrouted, then stopped gracefully)."""
        old = [r for r in await asyncio.to_thread(self.store.replicas.list, deployment.id) if r.phase != STOPPED]
        await asyncio.to_thread(self.store.replicas.record, deployment.id, self.runtime.kind, handle.to_dict(), "ready")
        await self.reconciler.refresh()  # both are routed for a moment
        await asyncio.to_thread(self.reconciler.retire, old)
        for row in old:  # at once: a sync must not pick an old one as the deployment's ready replica
            with contextlib.suppress(NotFound):
                await asyncio.to_thread(self.store.replicas.set_phase, row.id, "stopping")
        await self.reconciler.refresh()  # the old ones no more: now they are stopped


def _tail(path: Path) -> list[str]:
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []
    return lines[-LOG_TAIL_LINES:]
