#!/usr/bin/env python3
"""Patch-to-served time of the development replica, hot swap and restart, on examples/hello.

    python benchmarks/live_reload_replica.py [--runs 30]

Starts `python -m truss_cli.server.control` on a copy of examples/hello, then N times per
mode: send an envelope changing the greeting to the control port, and predict on a new
connection until the new greeting comes back. The time is from sending the patch to that
answer (what the replica adds; the watcher's detection and the control plane's hop are not
in it). `hot swap` edits predict() only; `restart` sends the same kind of edit with
`hot_reload: "off"`, so a new worker generation loads (forked from the warm zygote) and takes
over the socket. Truss's anchors (measured in the issue, control server + proxy): restart
~1.16 s, hot reload ~34 ms.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
from truss_cli.config import load_config  # noqa: E402
from truss_cli.config_to_replica import replica_config_for  # noqa: E402
from truss_cli.server.control.apply import scan_tree  # noqa: E402
from truss_cli.server.status import read_status  # noqa: E402
from truss_cli.sync.envelope import envelope_bytes  # noqa: E402
from truss_cli.sync.manifest import FILE_MODE, Entry, Manifest  # noqa: E402

TOKEN = "benchmark"
ANCHORS = {"hot_swap": "~34 ms (Truss hot reload)", "restart": "~1.16 s (Truss restart)"}


def patch(control: httpx.Client, root: Path, source: str, hot_reload: str) -> dict:
    current = scan_tree(root)
    data = source.encode()
    digest = hashlib.sha256(data).hexdigest()
    entries = {**dict(current.items()), "model/model.py": Entry(digest, FILE_MODE)}
    document = {"format": 1, "from_hash": current.tree_hash(), "to_hash": Manifest(entries).tree_hash(),
                "puts": [{"path": "model/model.py", "sha256": digest, "mode": FILE_MODE}], "deletes": [],
                "hot_reload": hot_reload}
    answer = control.post("/control/patch", content=envelope_bytes(document, {digest: data}))
    answer.raise_for_status()
    return answer.json()


def predict_on_a_new_connection(port: int) -> str:
    # http.client, not httpx.post: that builds a client (and its TLS context, ~20-40 ms) per call.
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("POST", "/v1/models/model:predict", body=b'{"name": "x"}', headers={"Content-Type": "application/json"})
        return connection.getresponse().read().decode()
    finally:
        connection.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="lr-bench-"))
    root = work / "hello"
    shutil.copytree(REPO_ROOT / "examples" / "hello", root)
    replica_config = work / "replica.json"
    replica_config.write_text(replica_config_for(load_config(root).config, secret_values=True).to_json())
    status_file = work / "status.json"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "TRUSS_CONTROL_TOKEN": TOKEN}
    process = subprocess.Popen(
        [sys.executable, "-m", "truss_cli.server.control", str(root), "--replica-config", str(replica_config),
         "--port", "0", "--status-file", str(status_file)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while (status := read_status(status_file)) is None or status.phase != "ready":
            if time.monotonic() > deadline or process.poll() is not None:
                print("the replica did not start", file=sys.stderr)
                return 1
            time.sleep(0.05)
        control = httpx.Client(base_url=f"http://127.0.0.1:{status.control_port}",
                               headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60)
        original = (root / "model" / "model.py").read_text()
        print(f"examples/hello, {args.runs} runs per mode, patch sent → new code answered (new connection)")
        print(f"{'mode':<10} {'p50 ms':>8} {'p90 ms':>8} {'replica p50 ms':>15}  anchor")
        counter = 0
        for mode, hot_reload in (("hot_swap", "auto"), ("restart", "off")):
            served, inside = [], []
            for _ in range(args.runs):
                counter += 1
                marker = f"run {counter}"
                source = original.replace('f"{self._greeting}, {name}!"', f'f"{{self._greeting}}, {{name}}! ({marker})"')
                started = time.perf_counter()
                verdict = patch(control, root, source, hot_reload)
                while marker not in predict_on_a_new_connection(status.port):
                    pass
                served.append((time.perf_counter() - started) * 1000)
                inside.append(verdict["ms"]["total"])
                assert verdict["action"] == mode, verdict
            quantiles = statistics.quantiles(served, n=10)
            print(f"{mode:<10} {statistics.median(served):8.1f} {quantiles[8]:8.1f} {statistics.median(inside):15.1f}  {ANCHORS[mode]}")
        control.close()
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=40)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
