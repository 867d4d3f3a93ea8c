"""A real control plane for tests: `python -m truss_cli.controlplane serve --port 0` in a
subprocess, its URL read from `<data_dir>/controlplane.json`, and an admin key bootstrapped
with `create-admin-key`, as `truss server start` does.

    with running_controlplane(tmp_path / "cp") as cp:
        cp.client.get("/v1/server")        # httpx.Client with the admin key
        cp.push(Path("examples/hello"))    # pack, upload, create a deployment
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import httpx

from truss_cli.archive.pack import plan_pack, write_archive

STATE_FILE = "controlplane.json"


def create_admin_key(data_dir: Path, database_url: str | None = None) -> str:
    command = [sys.executable, "-m", "truss_cli.controlplane", "create-admin-key", "--data-dir", str(data_dir)]
    if database_url:
        command += ["--database-url", database_url]
    return subprocess.run(command, check=True, capture_output=True, text=True).stdout.strip()


@dataclass
class ControlPlaneProcess:
    data_dir: Path
    process: subprocess.Popen[bytes]
    url: str
    admin_key: str
    log_path: Path
    clients: list[httpx.Client] = field(default_factory=list)

    @property
    def client(self) -> httpx.Client:
        return self.client_for(self.admin_key)

    def client_for(self, key: str | None) -> httpx.Client:
        headers = {"Authorization": f"Api-Key {key}"} if key else {}
        client = httpx.Client(base_url=self.url, headers=headers, timeout=60.0)
        self.clients.append(client)
        return client

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def upload(self, model_dir: Path) -> str:
        """Pack `model_dir`, send only what the server lacks, return the tree hash."""
        plan = plan_pack(model_dir)
        missing = self.client.post("/v1/blobs/missing", json={"digests": plan.digests()}).raise_for_status().json()["missing"]
        buffer = io.BytesIO()
        write_archive(plan, buffer, lacking=missing)
        body = buffer.getvalue()
        response = self.client.post("/v1/archives", content=body, headers={
            "Content-Type": "application/octet-stream", "X-Truss-Archive-Sha256": hashlib.sha256(body).hexdigest()})
        assert response.status_code == 201, response.text
        return response.json()["tree_hash"]

    def push(self, model_dir: Path, model: str | None = None, **options: Any) -> dict[str, Any]:
        tree_hash = self.upload(model_dir)
        name = model or model_dir.name
        response = self.client.post(f"/v1/models/{name}/deployments", json={"tree_hash": tree_hash, **options})
        assert response.status_code == 201, response.text
        return response.json()

    def wait_for_status(self, model_id: str, deployment_id: str, *statuses: str, timeout: float = 900) -> dict[str, Any]:
        """Poll the deployment until it is in one of `statuses` (the timeout only stops a hang)."""
        deadline = time.monotonic() + timeout
        while True:
            deployment = self.client.get(f"/v1/models/{model_id}/deployments/{deployment_id}").raise_for_status().json()
            if deployment["status"] in statuses:
                return deployment
            assert self.process.poll() is None, f"control plane exited:\n{self.log()[-3000:]}"
            assert time.monotonic() < deadline, f"still {deployment} after {timeout} s\n{self.log()[-3000:]}"
            time.sleep(0.2)

    def kill(self) -> None:
        """SIGKILL: the crash the store and the reconciler must survive."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def terminate(self) -> int:
        self.process.terminate()
        return self.process.wait(timeout=60)

    def close(self) -> None:
        for client in self.clients:
            client.close()


def start_controlplane(data_dir: Path, *, runtime: str = "process", database_url: str | None = None,
                       admin_key: str | None = None, timeout: float = 60,
                       extra_args: tuple[str, ...] = ()) -> ControlPlaneProcess:
    """`extra_args`: more `serve` options (`--dev-idle-seconds 2`)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    key = admin_key or create_admin_key(data_dir, database_url)
    state_file = data_dir / STATE_FILE
    state_file.unlink(missing_ok=True)  # a killed predecessor's
    command = [sys.executable, "-m", "truss_cli.controlplane", "serve", "--data-dir", str(data_dir),
               "--port", "0", "--runtime", runtime]
    if database_url:
        command += ["--database-url", database_url]
    command += list(extra_args)
    log_path = data_dir / f"controlplane-{time.monotonic_ns()}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ))
    deadline = time.monotonic() + timeout
    while not state_file.exists():
        if process.poll() is not None:
            raise AssertionError(f"control plane exited with {process.returncode}:\n{log_path.read_text()}")
        assert time.monotonic() < deadline, f"no {state_file} after {timeout} s:\n{log_path.read_text()}"
        time.sleep(0.05)
    url = json.loads(state_file.read_text())["url"]
    return ControlPlaneProcess(data_dir, process, url, key, log_path)


@contextlib.contextmanager
def running_controlplane(data_dir: Path, **options: Any) -> Iterator[ControlPlaneProcess]:
    cp = start_controlplane(data_dir, **options)
    try:
        yield cp
    finally:
        cp.close()
        if cp.process.poll() is None:
            cp.terminate()
        stop_replicas(data_dir)


def stop_replicas(data_dir: Path) -> None:
    """Replicas outlive the control plane by design; a test stops the ones it started."""
    from truss_cli.controlplane.runtimes.base import Handle

    for path in (data_dir / "replicas").glob("*/handle.json"):
        try:
            handle = Handle.from_dict(json.loads(path.read_text()))
            os.killpg(int(handle.data["pid"]), signal.SIGKILL)
        except (OSError, ValueError, KeyError):
            continue
