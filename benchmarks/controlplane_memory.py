#!/usr/bin/env python3
"""The control plane's resident memory at idle and with 50 deployments registered.

    python benchmarks/controlplane_memory.py [--deployments 50]

Starts `python -m truss_cli.controlplane serve --port 0 --runtime process --build-workers 0`
and reads VmRSS (and the peak, VmHWM) from /proc/<pid>/status: 2 s after it wrote its URL
(idle), then after registering N deployments of N distinct models, each through the API as
`truss push --no-wait` does it (pack a tiny model directory, ask /v1/blobs/missing, upload the
archive, create the deployment), then listing them all and getting each once, and again 2 s
later. What is measured is the control plane holding N models, N deployments, their trees and
their queued builds in its store, routing table and caches. `--build-workers 0` keeps the
builds queued: 50 ACTIVE deployments would be 50 replica processes, whose memory is theirs
and not the control plane's.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cp_support import REPO_ROOT, rss_kib, start_controlplane, stop_controlplane  # noqa: E402

sys.path.insert(0, str(REPO_ROOT))
from truss_cli.archive.pack import plan_pack, write_archive  # noqa: E402


def tiny_model(root: Path, n: int) -> Path:
    model_dir = root / f"tiny-{n:03d}"
    shutil.copytree(REPO_ROOT / "examples" / "hello", model_dir)
    config = model_dir / "config.yaml"
    config.write_text(config.read_text().replace("model_name: hello", f"model_name: tiny-{n:03d}"))
    with open(model_dir / "model" / "model.py", "a") as f:
        f.write(f"# model {n}\n")
    return model_dir


def register(client: httpx.Client, model_dir: Path) -> dict:
    plan = plan_pack(model_dir)
    missing = client.post("/v1/blobs/missing", json={"digests": plan.digests()}).raise_for_status().json()["missing"]
    buffer = io.BytesIO()
    write_archive(plan, buffer, lacking=missing)
    body = buffer.getvalue()
    answer = client.post("/v1/archives", content=body, headers={
        "Content-Type": "application/octet-stream", "X-Truss-Archive-Sha256": hashlib.sha256(body).hexdigest()})
    answer.raise_for_status()
    created = client.post(f"/v1/models/{model_dir.name}/deployments", json={"tree_hash": answer.json()["tree_hash"]})
    created.raise_for_status()
    return created.json()


def mib(kib: int) -> str:
    return f"{kib / 1024:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deployments", type=int, default=50)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="controlplane-memory-"))
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), HOME=str(work / "home"),
               XDG_CACHE_HOME=str(work / "cache"), XDG_DATA_HOME=str(work / "data"))
    data_dir = work / "cp"
    cp, url, key = start_controlplane(data_dir, env, ("--build-workers", "0"))
    rows = []
    try:
        time.sleep(2)
        rows.append(("idle, 2 s after start", rss_kib(cp.pid)))
        with httpx.Client(base_url=url, headers={"Authorization": f"Api-Key {key}"}, timeout=60) as client:
            rows.append(("idle, after one GET /v1/server", (client.get("/v1/server").raise_for_status(), rss_kib(cp.pid))[1]))
            t0 = time.perf_counter()
            created = [register(client, tiny_model(work / "models", n)) for n in range(args.deployments)]
            took = time.perf_counter() - t0
            for d in created:
                client.get(f"/v1/models/{d['model_id']}/deployments/{d['id']}").raise_for_status()
            listed = client.get("/v1/models").raise_for_status().json()
            server = client.get("/v1/server").raise_for_status().json()
            rows.append((f"{args.deployments} deployments registered", rss_kib(cp.pid)))
            time.sleep(2)
            rows.append((f"{args.deployments} deployments, 2 s later", rss_kib(cp.pid)))
    finally:
        stop_controlplane(cp, data_dir)
        shutil.rmtree(work, ignore_errors=True)
    count = len(listed.get("models", listed)) if isinstance(listed, dict) else len(listed)
    print(f"registered {args.deployments} deployments in {took:.2f} s ({count} models listed; "
          f"server says {server.get('deployments')} deployments, {server.get('replicas')} replicas)")
    print(f"\n{'control plane':34s}{'VmRSS MiB':>10s}{'VmHWM MiB':>10s}{'threads':>9s}")
    for label, m in rows:
        print(f"{label:34s}{mib(m['VmRSS']):>10s}{mib(m['VmHWM']):>10s}{m['Threads']:9d}")


if __name__ == "__main__":
    main()
