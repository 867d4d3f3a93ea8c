"""A real development replica (`python -m truss_cli.server.control`) in a subprocess, and a
client that sends it patches the way the control plane does (no tests of its own)."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

import httpx

from conftest import REPO_ROOT
from test_server_harness import write_replica_config
from truss_cli.server.control.apply import scan_tree
from truss_cli.server.protocol import CONTROL_TOKEN_ENV, PREDICT_PATH, STATUS_FILE_ENV
from truss_cli.server.status import ReplicaStatus, read_status
from truss_cli.sync.envelope import envelope_bytes
from truss_cli.sync.manifest import FILE_MODE, Entry, Manifest, ManifestError

TOKEN = "test-control-token"


class DevReplica:
    def __init__(self, model_dir: Path, env: Optional[dict] = None, replica_config: Optional[Path] = None) -> None:
        """`replica_config`: the config file to boot with (default: written from model_dir's
        config.yaml; a Kubernetes pod boots on an empty tree with its image's)."""
        self.model_dir = model_dir
        self.log_path = model_dir.parent / f"{model_dir.name}.dev.log"
        self.status_path = model_dir.parent / f"{model_dir.name}.dev.status.json"
        if replica_config is None:
            replica_config = write_replica_config(model_dir, model_dir.parent / f"{model_dir.name}.replica.json")
        full_env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), STATUS_FILE_ENV: str(self.status_path),
                    CONTROL_TOKEN_ENV: TOKEN, "TRUSS_EXPOSE_ERRORS": "1", **(env or {})}
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "truss_cli.server.control", str(model_dir), "--replica-config", str(replica_config),
                 "--host", "127.0.0.1", "--port", "0", "--control-port", "0"],
                env=full_env, stdout=log, stderr=subprocess.STDOUT,
            )
        # "loading" with a generation: one on an empty tree, waiting for its tree.
        status = self.wait_status(lambda s: s.phase in ("ready", "failed", "loading") and s.generation is not None,
                                  "the first generation")
        self.url = f"http://127.0.0.1:{status.port}"
        self.control_url = f"http://127.0.0.1:{status.control_port}"
        self.control = httpx.Client(base_url=self.control_url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60)

    def __enter__(self) -> "DevReplica":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def status(self) -> Optional[ReplicaStatus]:
        return read_status(self.status_path)

    def wait_status(self, condition, what: str, timeout: float = 60) -> ReplicaStatus:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.status()
            if status is not None and condition(status):
                return status
            if self.process.poll() is not None:
                raise AssertionError(f"the replica exited before {what}\n--- log ---\n{self.log()}")
            time.sleep(0.02)
        raise AssertionError(f"timed out waiting for {what}\n--- log ---\n{self.log()}")

    def predict(self, json: object = None) -> httpx.Response:
        # A new connection each time: what a new client sees.
        return httpx.post(self.url + PREDICT_PATH, json=json if json is not None else {}, timeout=30)

    def state(self) -> dict:
        return self.control.get("/control/state").json()

    def patch(
        self,
        files: dict,
        deletes: tuple = (),
        from_hash: Optional[str] = None,
        to_hash: Optional[str] = None,
        **fields: object,
    ) -> httpx.Response:
        """Send the change `files` (path -> text) and `deletes` against the replica's tree."""
        document, blobs = patch_document(self.model_dir, files, deletes)
        if from_hash is not None:
            document["from_hash"] = from_hash
        if to_hash is not None:
            document["to_hash"] = to_hash
        document.update(fields)
        return self.control.post("/control/patch", content=envelope_bytes(document, blobs),
                                 headers={"Content-Type": "application/x-tar"})

    def stop(self) -> int:
        self.control.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.process.kill()
        return self.process.wait()


def patch_document(model_dir: Path, files: dict, deletes: tuple = ()) -> tuple:
    """(patch.json, blobs) turning `model_dir`'s tree into the tree with `files` and without `deletes`."""
    current = scan_tree(model_dir)
    entries = dict(current.items())
    blobs, puts = {}, []
    for path, text in files.items():
        data = text.encode() if isinstance(text, str) else text
        digest = hashlib.sha256(data).hexdigest()
        blobs[digest] = data
        entries[path] = Entry(digest, FILE_MODE)
        puts.append({"path": path, "sha256": digest, "mode": FILE_MODE})
    for path in deletes:
        entries.pop(path, None)
    try:
        to_hash = Manifest(entries).tree_hash()
    except ManifestError:  # a hostile path: the replica must refuse it before hashing matters
        to_hash = "0" * 64
    document = {
        "format": 1, "from_hash": current.tree_hash(), "to_hash": to_hash,
        "puts": puts, "deletes": list(deletes), "replica_config": None, "environment": None, "python": None,
        "hot_reload": "auto",
    }
    return document, blobs
