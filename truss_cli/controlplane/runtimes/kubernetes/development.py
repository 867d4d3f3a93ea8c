"""Development deployments on Kubernetes: the control token, and the start tree's delivery.

A development deployment's pods run the development replica (`python -m
truss_cli.server.control`, objects.development_command) on an empty, writable tree. Nothing
can be copied into a pod before it starts (no exec, no `docker cp`; the pods run as a non-root
user), and a pod may start at any time (a scale-up, a wake, a pod the ReplicaSet replaces),
so the tree comes the way patches do: once the pod's control API answers, the runtime's
`status` sends it one patch from the empty tree to the replica's start tree
(ReplicaSpec.tree_dir, the staged-else-running tree), with that tree's replica config and
environment, exactly the envelope a sync sends. The replica loads it as a new generation;
`status` says LOADING until then, so the control plane routes to a pod, and syncs patches to
it, only once it serves the start tree. A delivery runs in a thread of its own (a model's
load() may take minutes; the reconciler's tick must not wait for it).

The token: one per deployment (every pod of a Deployment has the same template), random, in
a Secret `truss-control-<deployment id>` that the pods mount as a file (objects.py) and in a
0600 file under the control plane's data dir, which the Handle names (CONTROL_TOKEN_FILE), as
on the other runtimes. So it is in no pod spec, command line, environment or log. A control
plane that lost its file takes the token back from the Secret, so running pods keep theirs.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import secrets as _random
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import httpx

from truss_cli.config import ConfigError, load_config
from truss_cli.config_to_replica import replica_config_for
from truss_cli.controlplane.runtimes.base import Handle, control_token
from truss_cli.controlplane.runtimes.kubernetes import objects
from truss_cli.controlplane.runtimes.kubernetes.api import KubernetesApi
from truss_cli.errors import TrussError
from truss_cli.server import protocol
from truss_cli.server.control.apply import scan_tree
from truss_cli.sync.envelope import write_envelope
from truss_cli.sync.manifest import LINK_MODE, Manifest

logger = logging.getLogger(__name__)

TOKEN_SECRET_PREFIX = "truss-control-"
# What a development pod's tree hashes to before its delivery: it boots on an empty emptyDir.
EMPTY_TREE_HASH = Manifest().tree_hash()
# Handle.data keys of a development replica (the runtime's own; CONTROL_* are base.py's).
DEVELOPMENT = "development"
START_TREE_DIR = "tree_dir"
START_TREE_HASH = "tree_hash"
# The delivery loads the model anew: load() may take long (weights).
DELIVERY_TIMEOUT = httpx.Timeout(connect=5.0, read=900.0, write=300.0, pool=5.0)


def token_secret_name(deployment_id: str) -> str:
    objects.object_name(deployment_id)  # refuses an id that cannot name an object
    return TOKEN_SECRET_PREFIX + deployment_id


class ControlTokens:
    """The control token of each development deployment: a 0600 file under `root` (the control
    plane's copy) and the Secret the pods mount."""

    def __init__(self, api: KubernetesApi, root: Path) -> None:
        self.api = api
        self.root = root

    def ensure(self, model_id: str, deployment_id: str) -> Path:
        """The token file of the deployment, made (or taken back from its Secret) when missing;
        the Secret applied (idempotent: the same token every time)."""
        path = self.root / deployment_id / objects.CONTROL_TOKEN_KEY
        token = _read(path) or self._from_secret(deployment_id) or _random.token_urlsafe(32)
        if _read(path) != token:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(descriptor, "w", encoding="utf-8") as out:
                out.write(token)
        self.api.apply({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": token_secret_name(deployment_id), "labels": objects.labels(model_id, deployment_id)},
            "type": "Opaque",
            "data": {objects.CONTROL_TOKEN_KEY: base64.b64encode(token.encode("ascii")).decode("ascii")},
        })  # fmt: skip
        return path

    def remove(self, deployment_id: str) -> None:
        self.api.delete("Secret", token_secret_name(deployment_id))
        shutil.rmtree(self.root / deployment_id, ignore_errors=True)

    def _from_secret(self, deployment_id: str) -> Optional[str]:
        secret = self.api.get("Secret", token_secret_name(deployment_id)) or {}
        value = (secret.get("data") or {}).get(objects.CONTROL_TOKEN_KEY)
        if not value:
            return None
        try:
            return base64.b64decode(value).decode("ascii").strip() or None
        except (ValueError, UnicodeDecodeError):
            return None


@dataclass(frozen=True)
class DeliveryFailure:
    """The start tree cannot be served by the pod: the model fails on it (the replica's 422),
    or the pod refuses the token. The replica is FAILED with this."""

    summary: str
    traceback: Optional[str] = None


@dataclass
class _Delivery:
    thread: threading.Thread
    failure: Optional[DeliveryFailure] = None


class TreeDeliveries:
    """Start trees sent to development pods, one thread per replica at a time; what `status`
    asks each tick: is it under way, or did it fail for good."""

    def __init__(self, work_dir: Path) -> None:
        self.work_dir = work_dir
        self._lock = threading.Lock()
        self._deliveries: dict[str, _Delivery] = {}

    def ensure(self, handle: Handle, control_url: str) -> Optional[DeliveryFailure]:
        """Start a delivery of the handle's start tree unless one runs; a failure when the
        last one failed for good (then none is started: the replica is restarted). A delivery
        that ended without a verdict (the pod unreachable, a 503) is started again."""
        with self._lock:
            current = self._deliveries.get(handle.replica_id)
            if current is not None and (current.thread.is_alive() or current.failure is not None):
                return current.failure if not current.thread.is_alive() else None
            delivery = _Delivery(threading.Thread(target=self._run, args=(handle, control_url), daemon=True,
                                                  name=f"deliver-tree-{handle.replica_id}"))
            self._deliveries[handle.replica_id] = delivery
            delivery.thread.start()
            return None

    def forget(self, replica_id: str) -> None:
        with self._lock:
            self._deliveries.pop(replica_id, None)

    def _run(self, handle: Handle, control_url: str) -> None:
        try:
            failure = deliver(handle, control_url, self.work_dir)
        except Exception:  # a bug must not kill the control plane; the next status tries again
            logger.exception("delivering the start tree to replica %s failed", handle.replica_id)
            failure = None
        with self._lock:
            delivery = self._deliveries.get(handle.replica_id)
            if delivery is not None and delivery.thread is threading.current_thread():
                delivery.failure = failure


def deliver(handle: Handle, control_url: str, work_dir: Path) -> Optional[DeliveryFailure]:
    """One patch from the empty tree to the handle's start tree, sent to the pod's control
    API -> None when it serves it (or is past the empty tree already, or cannot be reached:
    asked again later), a DeliveryFailure when it never will."""
    token = control_token(handle)
    if token is None:
        return DeliveryFailure("the control token file of the development deployment is gone")
    tree_dir = Path(str(handle.data.get(START_TREE_DIR)))
    try:
        envelope = start_tree_envelope(tree_dir, work_dir)
    except (OSError, ConfigError, TrussError) as exc:
        return DeliveryFailure(f"the start tree {tree_dir.name[:12]} cannot be sent: {exc}")
    try:
        with open(envelope, "rb") as body, httpx.Client(timeout=DELIVERY_TIMEOUT, trust_env=False) as client:
            answer = client.post(control_url + protocol.CONTROL_PATCH_PATH, content=body,
                                 headers={"authorization": f"Bearer {token}", "content-type": "application/x-tar"})
    except httpx.HTTPError as exc:
        logger.info("the development pod of replica %s cannot be reached yet (%s)", handle.replica_id, type(exc).__name__)
        return None
    finally:
        envelope.unlink(missing_ok=True)
    if answer.status_code == 422:
        detail = _json(answer).get("detail") or {}
        return DeliveryFailure(detail.get("summary") or "the model failed to load its start tree", detail.get("traceback"))
    if answer.status_code == 401:
        return DeliveryFailure("the development pod refused the control plane's token (its Secret "
                               f"{token_secret_name(handle.deployment_id)} was changed after the pod started)")
    if answer.status_code not in (200, 409):  # 409: it is past the empty tree (delivered already)
        logger.warning("the development pod of replica %s answered the start tree with %s: %s",
                       handle.replica_id, answer.status_code, answer.text[:300])
    return None


def start_tree_envelope(tree_dir: Path, work_dir: Path) -> Path:
    """The replica envelope empty tree -> the tree in `tree_dir` (hashed as the replica hashes
    its own), with its config.yaml's replica config and environment, in a temporary file."""
    manifest = scan_tree(tree_dir)
    config = load_config(tree_dir).config
    document: dict[str, Any] = {
        "format": 1, "from_hash": EMPTY_TREE_HASH, "to_hash": manifest.tree_hash(),
        "puts": [{"path": path, "sha256": entry.sha256, "mode": entry.mode} for path, entry in sorted(manifest.items())],
        "deletes": [],
        "replica_config": json.loads(replica_config_for(config, secret_values=True).to_json()),
        "environment": {key: str(value) for key, value in config.environment_variables.items()},
        "python": None,
        "hot_reload": "off",  # a new generation: the boot generation loaded nothing
    }  # fmt: skip
    blobs: dict[str, Any] = {}
    for path, entry in manifest.items():
        # A link's content is its target text (sync/manifest.py); a file's, its bytes.
        blobs[entry.sha256] = os.fsencode(os.readlink(tree_dir / path)) if entry.mode == LINK_MODE else tree_dir / path
    work_dir.mkdir(parents=True, exist_ok=True)
    descriptor, name = tempfile.mkstemp(prefix="start-tree-", suffix=".tar", dir=work_dir)
    with open(descriptor, "wb") as out:
        write_envelope(out, document, blobs)
    return Path(name)


def _read(path: Path) -> Optional[str]:
    try:
        return path.read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def _json(answer: httpx.Response) -> dict[str, Any]:
    try:
        body = answer.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
