#!/usr/bin/env python3
"""Cold start: a request to a published deployment at zero replicas -> its answer (issue 11).

    python benchmarks/cold_start.py [--model-dir examples/hello] [--rounds 5]

One control plane on the process runtime (its own data and cache directories under a
temporary directory). The model is pushed once (untimed: this builds the environment) and
its autoscaling set to `min_replica 0, scale_down_delay 0`, so with no request it goes to
SCALED_TO_ZERO within a tick or two. Each round waits until it is SCALED_TO_ZERO and no
replica process is left, then times one `POST /model-{id}/production/predict` from send to
answer: the gateway parks it, the reconciler wakes the deployment (WAKING_UP), starts a replica
from the cached environment, and routes the parked request to it once ready. Goal: < 1.5 s
(Knative-based stacks take seconds).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cp_support import REPO_ROOT, start_controlplane, stop_controlplane  # noqa: E402

sys.path.insert(0, str(REPO_ROOT))
from truss_cli.archive.pack import plan_pack, write_archive  # noqa: E402


def push(client: httpx.Client, model_dir: Path, name: str) -> dict:
    plan = plan_pack(model_dir)
    missing = client.post("/v1/blobs/missing", json={"digests": plan.digests()}).raise_for_status().json()["missing"]
    buffer = io.BytesIO()
    write_archive(plan, buffer, lacking=missing)
    body = buffer.getvalue()
    tree_hash = client.post("/v1/archives", content=body, headers={
        "Content-Type": "application/octet-stream", "X-Truss-Archive-Sha256": hashlib.sha256(body).hexdigest(),
    }).raise_for_status().json()["tree_hash"]
    return client.post(f"/v1/models/{name}/deployments", json={"tree_hash": tree_hash}).raise_for_status().json()


def wait_for(client: httpx.Client, deployment: dict, status: str, timeout: float = 600) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        found = client.get(f"/v1/models/{deployment['model_id']}/deployments/{deployment['id']}").raise_for_status().json()
        if found["status"] == status:
            return found
        if found["status"] in ("BUILD_FAILED", "DEPLOY_FAILED") or time.monotonic() > deadline:
            raise RuntimeError(f"waiting for {status}: {found}")
        time.sleep(0.05)


def replicas_running(data_dir: Path) -> int:
    """Replica processes still alive (handle.json's pid answers signal 0)."""
    alive = 0
    for path in (data_dir / "replicas").glob("*/handle.json"):
        try:
            os.kill(int(json.loads(path.read_text())["data"]["pid"]), 0)
            alive += 1
        except (OSError, ValueError, KeyError):
            continue
    return alive


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, default=REPO_ROOT / "examples" / "hello")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="truss-cold-start-"))
    env = {**os.environ, "TRUSS_CACHE_DIR": str(base / "cache"), "PYTHONPATH": str(REPO_ROOT)}
    model_dir = base / "model"
    shutil.copytree(args.model_dir, model_dir)
    data_dir = base / "cp"
    process, url, key = start_controlplane(data_dir, env)
    times = []
    try:
        with httpx.Client(base_url=url, headers={"Authorization": f"Api-Key {key}"}, timeout=120) as client:
            started = time.perf_counter()
            deployment = push(client, model_dir, "coldstart")
            wait_for(client, deployment, "ACTIVE")
            print(f"warm-up push to ACTIVE (builds the environment): {time.perf_counter() - started:.2f} s")
            client.patch(f"/v1/models/{deployment['model_id']}/deployments/{deployment['id']}/autoscaling_settings",
                         json={"min_replica": 0, "scale_down_delay": 0}).raise_for_status()
            path = f"/model-{deployment['model_id']}/production/predict"
            for n in range(args.rounds):
                wait_for(client, deployment, "SCALED_TO_ZERO")
                while replicas_running(data_dir):
                    time.sleep(0.05)
                time.sleep(0.5)  # settled: nothing of the last round still running
                sent = time.perf_counter()
                response = client.post(path, json={"text": "cold"})
                elapsed = time.perf_counter() - sent
                if response.status_code != 200:
                    raise RuntimeError(f"round {n + 1}: {response.status_code} {response.text}")
                times.append(elapsed)
                print(f"round {n + 1}: request at zero -> answer {elapsed:.3f} s")
    finally:
        stop_controlplane(process, data_dir)
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    print(f"cold start over {len(times)} rounds: min {min(times):.3f} s, median {statistics.median(times):.3f} s, "
          f"max {max(times):.3f} s (goal < 1.5 s)")


if __name__ == "__main__":
    main()
