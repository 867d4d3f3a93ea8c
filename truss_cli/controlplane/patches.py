"""Patch points of development deployments: stage a client's patch as a stored tree, say
where a deployment stands, and sync the staged tree into its running replica
(docs/live-reload.md, "Control plane: patch points").

Staging needs only the store; a sync talks to the replica's control API, whose URL and
token file the runtime put in the replica's Handle data (runtimes.base.CONTROL_URL,
CONTROL_TOKEN_FILE), so nothing here knows which runtime runs the replica.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import httpx

from truss_cli.config import ConfigError, load_config
from truss_cli.config_to_replica import replica_config_for
from truss_cli.controlplane.builds import build_log_path
from truss_cli.controlplane.errors import ApiError
from truss_cli.controlplane.patch_classify import Change, RequirementsDelta, classify, config_loader, requirements_delta
from truss_cli.controlplane.runtimes.base import CONTROL_URL, BuildError, Handle, control_token, one_line_cause
from truss_cli.controlplane.runtimes.environments import ProvisionUnsupported, ReplicaUnavailable
from truss_cli.controlplane.runtimes.logfile import LogFile
from truss_cli.controlplane.store import Deployment, Store, states
from truss_cli.controlplane.store.blobs import SyncBatch
from truss_cli.controlplane.store.patch_points import StaleBase
from truss_cli.controlplane.trees import Trees
from truss_cli.errors import TrussError
from truss_cli.requirements import resolve_requirements
from truss_cli.server import protocol
from truss_cli.server.status import READY
from truss_cli.sync.envelope import EnvelopeError, read_envelope, write_envelope
from truss_cli.sync.patch import Patch, PatchError

MAX_ENVELOPE_BYTES = 4 << 30  # as the replica's limit
RETRY_AFTER_SECONDS = 1
# A restart loads the model anew; load() may take long (weights), and the old code serves meanwhile.
REPLICA_TIMEOUT = httpx.Timeout(connect=5.0, read=900.0, write=60.0, pool=5.0)
# Deployments whose replica cannot run the staged tree now: the next replica starts at it.
_NOT_RUNNING = frozenset({states.SCALED_TO_ZERO, states.INACTIVE, states.DEACTIVATING})


def state_of(deployment: Deployment) -> dict[str, Any]:
    pending = deployment.pending_tree_hash
    rebuild = dict(deployment.rebuild) if deployment.rebuild else None
    return {"running_patch_point": {"hash": deployment.running_tree},
            "pending_patch_point": {"hash": pending} if pending else None,
            "rebuild": rebuild}


def stale(deployment: Deployment) -> ApiError:
    return ApiError(409, "STALE_PATCH_BASE",
                    f"the patch is not based on the development deployment's current tree {deployment.current_tree}: "
                    "re-read the state (GET .../patches/state?manifest=1), diff and resend", state_of(deployment))


def stage(store: Store, trees: Trees, deployment: Deployment, envelope: Path) -> tuple[Deployment, Patch]:
    """Check the envelope's patch against the deployment's current tree, keep its blobs and
    the new tree, and stage it. Nothing is stored for a refused patch (blobs aside, which are
    content-addressed and swept when unused)."""
    work = Path(tempfile.mkdtemp(prefix="patch-", dir=_tmp(store)))
    try:
        try:
            with open(envelope, "rb") as stream:
                document = read_envelope(stream, work, MAX_ENVELOPE_BYTES)
        except EnvelopeError as exc:
            raise ApiError(400, "BAD_ENVELOPE", str(exc)) from None
        try:
            patch = Patch.from_dict(document)
        except PatchError as exc:
            raise ApiError(400, "BAD_PATCH", str(exc)) from None
        base_hash = deployment.current_tree
        if patch.prev_patch_hash != base_hash:
            raise stale(deployment)
        base = trees.manifest(base_hash or "")
        if base is None:
            raise ApiError(500, "TREE_NOT_FOUND", f"the deployment's tree {base_hash} is not stored")
        try:
            new = patch.apply_to(base)
        except PatchError as exc:
            code = "TREE_HASH_MISMATCH" if str(exc).startswith("next_hash") else "BAD_PATCH"
            raise ApiError(400, code, str(exc)) from None
        # One fsync batch per patch: blobs, the manifest and its index are written unsynced,
        # then made durable together before the database names the tree (store/blobs.py).
        batch = SyncBatch()
        missing = []
        for path, entry in patch.changes.puts().items():
            if store.blobs.has(entry.sha256):
                batch.add(store.blobs.path(entry.sha256))  # maybe a blob of a refused patch, never flushed
                continue
            blob = work / entry.sha256
            if blob.is_file():
                store.blobs.adopt(blob, entry.sha256, batch)  # read_envelope verified its digest
            else:
                missing.append(path)
        if missing:
            raise ApiError(400, "MISSING_BLOB", f"no content for {', '.join(sorted(missing))}: send it in the envelope",
                           {"paths": sorted(missing)})
        tree_hash = trees.keep(new, batch, base=base_hash, changes=patch.changes)
        batch.flush()
        try:
            return store.patch_points.stage(deployment.id, patch.prev_patch_hash, tree_hash), patch
        except StaleBase as exc:  # another patch landed between the check and now
            raise stale(exc.deployment) from None
    finally:
        try:
            os.rmdir(work)  # the usual case: every blob was adopted by the store
        except OSError:
            shutil.rmtree(work, ignore_errors=True)


@dataclass
class Syncer:
    """Syncs staged trees into replicas, one sync per deployment at a time."""

    store: Store
    trees: Trees
    forget_connections: Any  # (replica url) -> None, on the event loop: the gateway's pooled connections
    development_replicas: bool = True  # the runtime's: False makes every sync a rebuild
    hot_reload: dict[str, str] = field(default_factory=dict)  # deployment id -> the last patch's choice
    # The runtime's `environment_for` (runtimes.environments), None when it builds no
    # environments: a requirements change is then a rebuild.
    environment_for: Optional[Callable[..., str]] = None
    # The runtime's `provision(handle, tree_dir, on_progress) -> python` (runtimes.environments),
    # None when it cannot install into a running replica: docker installs a tree's requirements
    # and system packages inside the serving container instead of rebuilding its image.
    provision: Optional[Callable[..., str]] = None
    # (deployment id, staged tree) -> None, on the event loop: runs a recorded rebuild (dev_rebuild).
    start_rebuild: Callable[[str, str], None] = lambda deployment_id, tree_hash: None
    _locks: dict[str, asyncio.Lock] = field(default_factory=dict)
    _configs: dict[str, Any] = field(default_factory=dict)  # config.yaml digest -> its parsed TrussConfig

    def __post_init__(self) -> None:
        self.hot_reload = HotReloadChoices(self.store.patch_points.set_hot_reload)

    async def sync(self, deployment_id: str) -> tuple[int, dict[str, Any], dict[str, str]]:
        """-> (status, body, headers): the contract's answers (200 / 422 / 503)."""
        lock = self._locks.setdefault(deployment_id, asyncio.Lock())
        async with lock:
            return await self._sync(deployment_id)

    async def _sync(self, deployment_id: str) -> tuple[int, dict[str, Any], dict[str, str]]:
        started = time.perf_counter()
        deployment = await asyncio.to_thread(self.store.deployments.get_by_id, deployment_id)
        running, pending = deployment.running_tree or "", deployment.pending_tree_hash
        if pending is None:
            return 200, _answer("none", "nothing staged", running, started), {}
        if deployment.rebuilding:
            rebuild = dict(deployment.rebuild or {})
            if rebuild.get("tree_hash") == pending:
                answer = _answer("rebuild", rebuild.get("reason", ""), pending, started)
                answer["needs_full_deploy_reason"] = answer["reason"]
                return 200, answer, {}
            return 200, _answer("deferred", f"a rebuild is {rebuild.get('phase')} (the previous tree serves): "
                                "this tree is synced once it ends", pending, started), {}
        change = Change()
        if not self.development_replicas:
            reason: Optional[str] = "this runtime does not start development replicas (patches are rebuilds)"
        elif deployment.status in _NOT_RUNNING or deployment.desired_state != states.DESIRED_ACTIVE:
            return 200, _answer("deferred", f"the deployment is {deployment.status}: its next replica starts at this tree",
                                pending, started), {}
        else:
            classified = await asyncio.to_thread(self._classify, running, pending)
            if isinstance(classified, str):
                reason = classified
            else:
                change = classified
                installs = self.environment_for is not None or self.provision is not None
                reason = change.rebuild_reason(installs, system_packages=self.provision is not None)
        if reason is None:
            replica = await asyncio.to_thread(self._ready_replica, deployment)
            if replica is None:
                if deployment.status in (states.BUILDING, states.DEPLOYING, states.LOADING_MODEL, states.WAKING_UP,
                                         states.UNHEALTHY, states.ACTIVE):
                    return _unavailable(f"the development replica is not ready ({deployment.status}); retry")
            elif CONTROL_URL not in replica.data:
                reason = "the replica has no control API (a custom server replica)"
            elif self.provision is not None and (change.requirements or change.system_packages):
                provisioned = await self._provisioned(deployment, replica, running, pending, started)
                if not isinstance(provisioned, str):
                    return provisioned
                reason = provisioned  # the container cannot install: a rebuild
            elif change.requirements:
                environment = await self._environment(deployment, running, pending)
                if len(environment) == 3:
                    return environment  # the 422
                python, delta = environment
                answer = await self._send(deployment, replica, running, pending, started, python)
                if answer[0] == 200:
                    answer[1].update(action="requirements", reason=delta.reason(), requirements=delta.to_dict())
                return answer
            else:
                return await self._send(deployment, replica, running, pending, started)
        if reason is None:
            reason = f"the deployment is {deployment.status}"
        if not await asyncio.to_thread(self.store.patch_points.begin_rebuild, deployment.id, pending, reason):
            return 200, _answer("deferred", "another tree was staged meanwhile, or a rebuild runs", pending, started), {}
        self.start_rebuild(deployment.id, pending)
        answer = _answer("rebuild", reason, pending, started)
        answer["needs_full_deploy_reason"] = reason
        return 200, answer, {}

    def _classify(self, running: str, pending: str) -> Change | str:
        """What the change running -> pending needs, or why a rebuild when it cannot be told."""
        old, new = self.trees.manifest(running), self.trees.manifest(pending)
        if old is None or new is None:
            return "the running tree is not stored"
        try:
            return classify(old, new, config_loader(self._read_blob, self._configs))
        except ConfigError as exc:
            return f"config.yaml: {str(exc).splitlines()[0]}"

    async def _environment(self, deployment: Deployment, running: str,
                           pending: str) -> tuple[str, RequirementsDelta] | tuple[int, dict[str, Any], dict[str, str]]:
        """The staged tree's environment (made now when new: the old one keeps serving) and
        what changed -> (python, delta); or the 422 answer when it cannot be made."""
        log_path = build_log_path(self.store, deployment.id)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        assert self.environment_for is not None
        try:
            delta = await asyncio.to_thread(self._requirements_delta, running, pending)
            with LogFile(log_path) as log:
                log(f"installing the requirements of tree {pending[:12]}: {delta.reason()}")
                # The tree is materialised in the worker thread too (never on the event loop).
                python = await asyncio.to_thread(lambda: self.environment_for(self.trees.tree(pending), log))
        except (BuildError, TrussError, ConfigError) as exc:
            output = getattr(exc, "output", None) or getattr(exc, "message", None) or str(exc)
            await asyncio.to_thread(self.store.patch_points.refused, deployment.id, pending)
            summary = f"installing the requirements failed: {one_line_cause(output)}"
            return 422, {"error": f"{summary}; the previous code serves", "error_code": "PATCH_FAILED",
                         "detail": {"phase": "requirements", "summary": summary, "traceback": output}}, {}
        return python, delta

    async def _provisioned(self, deployment: Deployment, replica: Handle, running: str, pending: str,
                           started: float) -> tuple[int, dict[str, Any], dict[str, str]] | str:
        """The docker branch: the staged tree's system packages and requirements installed
        inside the serving container (the runtime's `provision`; the old code serves
        meanwhile), then the patch with that environment's interpreter: the replica starts a
        new zygote on it and switches with overlap. 422 with the installer's output when an
        install fails; nothing is switched then. A str: why the container cannot install (a rebuild)."""
        log_path = build_log_path(self.store, deployment.id)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        assert self.provision is not None
        try:
            delta, packages = await asyncio.to_thread(self._provision_delta, running, pending)
            with LogFile(log_path) as log:
                log(f"installing into the development container for tree {pending[:12]}: {_install_reason(delta, packages)}")
                python = await asyncio.to_thread(lambda: self.provision(replica, self.trees.tree(pending), log))
        except ProvisionUnsupported as exc:
            return f"{_install_reason(delta, packages)}: {exc}"
        except ReplicaUnavailable as exc:  # being replaced: its successor starts at the staged tree (installs at start)
            return _unavailable(f"{exc}; retry")
        except (BuildError, TrussError, ConfigError) as exc:
            output = getattr(exc, "output", None) or getattr(exc, "message", None) or str(exc)
            await asyncio.to_thread(self.store.patch_points.refused, deployment.id, pending)
            summary = f"installing the requirements failed: {one_line_cause(str(exc)) or one_line_cause(output)}"
            return 422, {"error": f"{summary}; the previous code serves", "error_code": "PATCH_FAILED",
                         "detail": {"phase": "requirements", "summary": summary, "traceback": output}}, {}
        answer = await self._send(deployment, replica, running, pending, started, python)
        if answer[0] == 200:
            answer[1].update(action="requirements", reason=_install_reason(delta, packages),
                             requirements=delta.to_dict(), system_packages=packages)
        return answer

    def _provision_delta(self, running: str, pending: str) -> tuple[RequirementsDelta, dict[str, list[str]]]:
        """What changed running -> pending: the requirement lines, the system packages
        (`added`, `removed`: a removed one stays installed until the container is replaced)."""
        old_dir, new_dir = self.trees.tree(running), self.trees.tree(pending)
        old_config, new_config = load_config(old_dir).config, load_config(new_dir).config
        delta = requirements_delta(resolve_requirements(old_dir, old_config).requirements,
                                   resolve_requirements(new_dir, new_config).requirements)
        before = [word for entry in old_config.system_packages for word in entry.split()]
        after = [word for entry in new_config.system_packages for word in entry.split()]
        return delta, {"added": [name for name in after if name not in before],
                       "removed": [name for name in before if name not in after]}

    def _requirements_delta(self, running: str, pending: str) -> RequirementsDelta:
        old_dir, new_dir = self.trees.tree(running), self.trees.tree(pending)
        old = resolve_requirements(old_dir, load_config(old_dir).config).requirements
        new = resolve_requirements(new_dir, load_config(new_dir).config).requirements
        return requirements_delta(old, new)

    def _read_blob(self, digest: str) -> bytes:
        with self.store.blobs.open(digest) as blob:
            return blob.read()

    def _ready_replica(self, deployment: Deployment) -> Optional[Handle]:
        for row in self.store.replicas.list(deployment.id):
            if row.phase == READY:
                return Handle.from_dict(dict(row.handle))
        return None

    async def _send(self, deployment: Deployment, replica: Handle, running: str, pending: str,
                    started: float, python: Optional[str] = None) -> tuple[int, dict[str, Any], dict[str, str]]:
        token = control_token(replica)
        if token is None:
            return _unavailable("the development replica's control token is gone (it is being replaced); retry")
        url = replica.data[CONTROL_URL] + protocol.CONTROL_PATCH_PATH
        hot_reload = self.hot_reload.get(deployment.id, deployment.hot_reload)  # the store's after a restart
        base = running
        for _ in range(2):  # a second time from the replica's own tree when it is not at `running`
            envelope = await asyncio.to_thread(self._replica_envelope, base, pending, hot_reload, python)
            if envelope is None:
                return _unavailable("the replica's tree is not stored; retry")
            try:
                response = await asyncio.to_thread(_post, url, token, envelope)
            except httpx.HTTPError as exc:
                return _unavailable(f"the development replica cannot be reached ({type(exc).__name__}); retry")
            finally:
                envelope.unlink(missing_ok=True)
            body = _json(response)
            if response.status_code == 409 and isinstance(body.get("detail"), dict):
                at = body["detail"].get("tree_hash")
                if at == pending:  # it runs the staged tree already (a sync cut short)
                    await self._advanced(deployment.id, pending, replica)
                    return 200, _answer("none", "the replica runs this tree already", pending, started), {}
                if at and at != base and self.trees.manifest(at) is not None:
                    base = at
                    continue
            break
        if response.status_code == 200:
            await self._advanced(deployment.id, pending, replica)
            answer = _answer(body.get("action", "none"), body.get("reason", ""), pending, started)
            answer["ms"] = {**body.get("ms", {}), "total": answer["ms"]["total"]}
            return 200, answer, {}
        if response.status_code == 422:
            await asyncio.to_thread(self.store.patch_points.refused, deployment.id, pending)
            detail = body.get("detail") or {}
            summary = detail.get("summary") if isinstance(detail, dict) else None
            return 422, {"error": summary or "the patched model failed to load; the previous code serves",
                         "error_code": "PATCH_FAILED", "detail": detail}, {}
        if response.status_code in (401, 503):
            return _unavailable(f"the development replica answered {response.status_code}; retry")
        return 502, {"error": f"the development replica refused the patch: {body.get('detail') or response.text[:300]}",
                     "error_code": body.get("error_code", "REPLICA_ERROR"), "detail": body.get("detail")}, {}

    async def _advanced(self, deployment_id: str, pending: str, replica: Handle) -> None:
        await asyncio.to_thread(self.store.patch_points.advance, deployment_id, pending)
        if replica.url:
            # Pooled keep-alive connections were opened to the old generation: the next
            # request on one would be answered by the old code once more.
            self.forget_connections(replica.url)

    def _replica_envelope(self, base_hash: str, pending: str, hot_reload: str,
                          python: Optional[str] = None) -> Optional[Path]:
        """The replica's envelope base -> pending in a temporary file (blobs streamed from the store)."""
        old, new = self.trees.manifest(base_hash), self.trees.manifest(pending)
        if old is None or new is None:
            return None
        puts = {path: entry for path, entry in new.items() if old.get(path) != entry}
        deletes = sorted(path for path in old if path not in new)
        document: dict[str, Any] = {
            "format": 1, "from_hash": base_hash, "to_hash": pending,
            "puts": [{"path": path, "sha256": entry.sha256, "mode": entry.mode} for path, entry in sorted(puts.items())],
            "deletes": deletes, "replica_config": None, "environment": None, "python": python, "hot_reload": hot_reload,
        }  # fmt: skip
        if old.get("config.yaml") != new.get("config.yaml"):
            config = load_config(self.trees.tree(pending)).config
            document["replica_config"] = json.loads(replica_config_for(config, secret_values=True).to_json())
            document["environment"] = {k: str(v) for k, v in config.environment_variables.items()}
        blobs = {entry.sha256: self.store.blobs.path(entry.sha256) for entry in puts.values()}
        handle, name = tempfile.mkstemp(prefix="replica-patch-", suffix=".tar", dir=_tmp(self.store))
        with open(handle, "wb") as out:
            write_envelope(out, document, blobs)
        return Path(name)


class HotReloadChoices(dict[str, str]):
    """Deployment id -> the staged patch's hot-reload choice. Read from memory by the sync; a
    choice other than the one last stored is also written to the store (`save`, in a worker
    thread: off the patch's path), so a sync after a control-plane restart honours it. A
    watcher's patches all say the same: one write per deployment and control-plane run."""

    def __init__(self, save: Callable[[str, str], None]) -> None:
        super().__init__()
        self._save = save
        self._stored: dict[str, str] = {}

    def __setitem__(self, deployment_id: str, choice: str) -> None:
        super().__setitem__(deployment_id, choice)
        if self._stored.get(deployment_id) == choice:
            return  # (the first choice of each deployment is written: the store may hold another)
        self._stored[deployment_id] = choice
        try:
            asyncio.get_running_loop().run_in_executor(None, self._save, deployment_id, choice)
        except RuntimeError:  # no loop (a caller off the event loop): write now
            self._save(deployment_id, choice)


def _install_reason(delta: RequirementsDelta, packages: dict[str, list[str]]) -> str:
    """"requirements changed: +six==1.16.0", "system_packages changed: +jq", or both."""
    parts = []
    if delta.added or delta.removed or delta.changed or not (packages["added"] or packages["removed"]):
        parts.append(delta.reason())
    if packages["added"] or packages["removed"]:
        changes = [f"+{name}" for name in packages["added"]] + [f"-{name}" for name in packages["removed"]]
        parts.append(f"system_packages changed: {', '.join(changes)}"
                     + (" (removed packages stay installed until the next rebuild)" if packages["removed"] else ""))
    return "; ".join(parts)


def _post(url: str, token: str, envelope: Path) -> httpx.Response:
    with open(envelope, "rb") as body:
        return _replica_client().post(url, content=body,
                                      headers={"authorization": f"Bearer {token}", "content-type": "application/x-tar"})


@functools.cache
def _replica_client() -> httpx.Client:
    """One client for every sync (httpx's Client is thread-safe): creating one loads the CA
    bundle, ~30 ms here, which was a third of a hot swap's save to served. The control API
    closes every connection, so nothing is pooled across replicas or generations."""
    return httpx.Client(timeout=REPLICA_TIMEOUT)


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _answer(action: str, reason: str, tree_hash: str, started: float) -> dict[str, Any]:
    return {"action": action, "reason": reason, "tree_hash": tree_hash,
            "ms": {"total": round((time.perf_counter() - started) * 1000, 1)}, "needs_full_deploy_reason": None}


def _unavailable(message: str) -> tuple[int, dict[str, Any], dict[str, str]]:
    return (503, {"error": message, "error_code": "REPLICA_UNAVAILABLE", "detail": None},
            {"retry-after": str(RETRY_AFTER_SECONDS)})


def _tmp(store: Store) -> Path:
    path = store.data_dir / "tmp"
    path.mkdir(parents=True, exist_ok=True)
    return path
