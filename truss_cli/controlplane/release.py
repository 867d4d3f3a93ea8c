"""What a delete frees once its rows are gone: the replicas (stopped gracefully), the runtime
artifact (environment or image) no remaining deployment uses, the build log, the unpacked
tree no remaining deployment points at, and the blobs nothing uses (`Trees.sweep`).

The rows go first, in one transaction (`Reconciler.remove`), so a crash in the middle of this
leaves only things the next start frees: replicas no row knows are stopped (`adopt`) and the
sweep runs at start.
"""

from __future__ import annotations

import logging

from truss_cli.controlplane.builds import build_log_path
from truss_cli.controlplane.reconciler import Reconciler
from truss_cli.controlplane.runtimes.base import Artifact, Runtime
from truss_cli.controlplane.store import Removed, Store, states
from truss_cli.controlplane.trees import Trees

logger = logging.getLogger("truss.controlplane.release")


class Release:
    def __init__(self, store: Store, runtime: Runtime, trees: Trees, reconciler: Reconciler,
                 sweep_grace_seconds: float) -> None:
        self.store = store
        self.runtime = runtime
        self.trees = trees
        self.reconciler = reconciler
        self.sweep_grace_seconds = sweep_grace_seconds

    def __call__(self, removed: Removed) -> None:
        """Free what `removed` (a delete's result) held. Runs in a worker thread: stopping a
        replica waits for its in-flight requests."""
        self.reconciler.stop_replicas(removed.replicas)
        self.artifacts(removed)
        for deployment in removed.deployments:
            build_log_path(self.store, deployment.id).unlink(missing_ok=True)
        self.trees.release(d.archive_sha256 for d in removed.deployments if d.archive_sha256)
        self.sweep()

    def artifacts(self, removed: Removed) -> None:
        in_use = self.store.deployments.artifact_references()
        # A build running now may be about to hand another deployment the very same artifact
        # (process environments are keyed by their requirements), which no row says yet.
        building = any(self.store.builds.list(state=s) for s in (states.BUILD_RUNNING, states.BUILD_QUEUED))
        for deployment in removed.deployments:
            if not deployment.build_artifact:
                continue
            artifact = Artifact.from_dict(dict(deployment.build_artifact))
            if artifact.reference in in_use:
                continue
            if building:
                logger.info("keeping %s of deleted deployment %s: a build is running", artifact.reference, deployment.id)
                continue
            try:
                self.runtime.remove_artifact(artifact)
            except Exception:
                logger.exception("removing %s of deleted deployment %s failed", artifact.reference, deployment.id)
            in_use.add(artifact.reference)  # once, when two deleted deployments shared it

    def sweep(self) -> None:
        try:
            self.trees.sweep(self.sweep_grace_seconds)
        except Exception:
            logger.exception("sweeping unused trees and blobs failed; the next delete or start tries again")
