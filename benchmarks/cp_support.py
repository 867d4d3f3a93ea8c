"""A control plane for the benchmarks, started as tests/controlplane_support.py starts one:
`python -m truss_cli.controlplane serve --data-dir D --port 0 --runtime process`, its URL read
from `D/controlplane.json`, an admin key from `create-admin-key`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def start_controlplane(data_dir: Path, env: dict, extra: tuple = (), runtime: str = "process") -> tuple[subprocess.Popen, str, str]:
    """(process, url, admin key); the process is the control plane itself (no wrapper)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    key = subprocess.run(
        [sys.executable, "-m", "truss_cli.controlplane", "create-admin-key", "--data-dir", str(data_dir)],
        env=env, check=True, capture_output=True, text=True,
    ).stdout.strip()
    state = data_dir / "controlplane.json"
    log = open(data_dir / "controlplane.log", "wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "truss_cli.controlplane", "serve", "--data-dir", str(data_dir), "--port", "0",
         "--runtime", runtime, *extra],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while not state.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"control plane did not start:\n{(data_dir / 'controlplane.log').read_text()}")
        time.sleep(0.05)
    return process, json.loads(state.read_text())["url"], key


def stop_controlplane(process: subprocess.Popen, data_dir: Path) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    # Replicas outlive the control plane by design: stop the ones this run started.
    for path in (data_dir / "replicas").glob("*/handle.json"):
        try:
            os.killpg(int(json.loads(path.read_text())["data"]["pid"]), signal.SIGKILL)
        except (OSError, ValueError, KeyError):
            continue


def rss_kib(pid: int) -> dict:
    """VmRSS and VmHWM (peak) of `pid` in KiB, from /proc/<pid>/status."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM", "Threads"):
            out[key] = int(value.split()[0])
    return out
