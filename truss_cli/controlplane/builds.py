"""The build worker pool: N threads claim queued builds from the store and run `runtime.prepare`.

The queue is the store's builds table (claim is a compare-and-set), so a burst of pushes
waits there instead of overloading the machine, and a build a crash interrupted is queued
again at start (`requeue_interrupted`) and simply runs again.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from truss_cli.config import ConfigError, load_config
from truss_cli.controlplane.runtimes.base import BuildError, BuildRequest, Runtime
from truss_cli.controlplane.runtimes.logfile import LogFile
from truss_cli.controlplane.store import Store, StoreError
from truss_cli.controlplane.trees import Trees

logger = logging.getLogger("truss.controlplane.builds")

_IDLE_SECONDS = 0.5


def build_log_path(store: Store, deployment_id: str) -> Path:
    return store.data_dir / "logs" / "builds" / f"{deployment_id}.log"


class BuildWorkers:
    def __init__(self, store: Store, runtime: Runtime, trees: Trees, count: int, on_built: "callable[[], None]") -> None:
        self.store = store
        self.runtime = runtime
        self.trees = trees
        self.count = count
        self.on_built = on_built  # wakes the reconciler: a deployment is ready to start
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for n in range(self.count):
            thread = threading.Thread(target=self._run, name=f"build-worker-{n}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def wake(self) -> None:
        """A build was queued: claim it now rather than at the next poll."""
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop claiming; a build that is running is requeued by the next start if it is cut off."""
        self._stop.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            build = self.store.builds.claim()
            if build is None:
                self._wake.wait(_IDLE_SECONDS)
                self._wake.clear()
                continue
            self._run_one(build.id, build.deployment_id)

    def _run_one(self, build_id: str, deployment_id: str) -> None:
        try:
            self._build(build_id, deployment_id)
        except StoreError as exc:  # the deployment was deleted meanwhile: nothing to record
            logger.info("build %s of deployment %s: %s", build_id, deployment_id, exc)
        except Exception:  # never lose a worker thread
            logger.exception("build %s of deployment %s failed", build_id, deployment_id)

    def _build(self, build_id: str, deployment_id: str) -> None:
        log_path = build_log_path(self.store, deployment_id)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self.store.builds.set_log_path(build_id, str(log_path))
        try:
            deployment = self.store.deployments.get_by_id(deployment_id)
            model_dir = self.trees.tree(deployment.archive_sha256 or "")
            config = load_config(model_dir).config
            artifact = self.runtime.prepare(BuildRequest(deployment_id, model_dir, config, log_path,
                                                           deployment.model_id, deployment.name))
        except (BuildError, ConfigError) as exc:
            self.store.builds.finish(build_id, succeeded=False, cause=str(exc))
        except Exception as exc:  # a bug or the disk: the deployment says so instead of building forever
            logger.exception("build %s of deployment %s failed", build_id, deployment_id)
            with LogFile(log_path) as log:
                log(f"build failed: {type(exc).__name__}: {exc}")
            self.store.builds.finish(build_id, succeeded=False, cause=f"{type(exc).__name__}: {exc}")
        else:
            try:
                self.store.builds.finish(build_id, succeeded=True, artifact=artifact.to_dict())
            except StoreError:
                # The deployment was deleted while it built: what the build made is nobody's.
                if artifact.reference not in self.store.deployments.artifact_references():
                    self.runtime.remove_artifact(artifact)
        self.on_built()
