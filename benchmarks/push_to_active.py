#!/usr/bin/env python3
"""`truss push --wait` to ACTIVE against a control plane on the process runtime, warm environment cache.

    python benchmarks/push_to_active.py [--model-dir examples/hello] [--rounds 3]

One control plane (`python -m truss_cli.controlplane serve --port 0 --runtime process`, its own
data and cache directories under a temporary directory) and one user (own HOME, whose
~/.trussrc names that control plane, written by `truss remote add`). The model directory is
copied first, then pushed once untimed with `--wait` (this builds the environment the rest
reuse). Each round then times three pushes, each `python -m truss_cli push DIR --wait
--output json` as a subprocess, from start to exit:

- new tree: a marker line appended to every file, so every file is uploaded;
- unchanged: the same directory again, nothing uploaded (a new deployment all the same);
- one-line edit: a comment appended to model/model.py, only that file uploaded.

Every push creates a deployment with one replica; the benchmark deletes it (untimed) once the
push has exited, so replicas do not pile up. While a push runs, a thread polls the model's
deployments every 50 ms: the first time it sees the new deployment ACTIVE is printed as
"ACTIVE seen", so the gap to the CLI's exit is the CLI's own waiting (it polls once a second).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cp_support import REPO_ROOT, rss_kib, start_controlplane, stop_controlplane  # noqa: E402

CASES = ("new tree", "unchanged", "one-line edit")


class ActiveWatcher(threading.Thread):
    """Polls the model's deployments; records when a deployment not seen before is first ACTIVE."""

    def __init__(self, client: httpx.Client, model: str, known: set, started: float):
        super().__init__(daemon=True)
        self.client, self.model, self.known, self.started = client, model, known, started
        self.active_at: float | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set() and self.active_at is None:
            response = self.client.get(f"/v1/models/{self.model}/deployments")
            if response.status_code == 200:
                for d in response.json()["deployments"]:
                    if d["id"] not in self.known and d["status"] == "ACTIVE":
                        self.active_at = time.perf_counter() - self.started
            self.stop.wait(0.05)


def edit(model_dir: Path, case: str, n: int) -> None:
    if case == "new tree":
        for path in sorted(p for p in model_dir.rglob("*") if p.is_file()):
            marker = f"<!-- round {n} -->" if path.suffix == ".md" else f"# round {n}"
            with open(path, "a") as f:
                f.write(f"\n{marker}\n")
    elif case == "one-line edit":
        with open(model_dir / "model" / "model.py", "a") as f:
            f.write(f"# edit {n}\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, default=REPO_ROOT / "examples" / "hello")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="push-to-active-"))
    model_dir = work / "model"
    shutil.copytree(args.model_dir, model_dir)
    home = work / "home"
    home.mkdir()
    cp_env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), HOME=str(work / "cp-home"),
                  XDG_CACHE_HOME=str(work / "cp-cache"), XDG_DATA_HOME=str(work / "cp-data"))
    user_env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), HOME=str(home),
                    XDG_CACHE_HOME=str(home / "cache"), XDG_DATA_HOME=str(home / "data"))
    truss = [sys.executable, "-m", "truss_cli"]
    cp, url, key = start_controlplane(work / "cp-data-dir", cp_env)
    times: dict = {case: [] for case in CASES}
    seen: dict = {case: [] for case in CASES}
    ok = False
    try:
        subprocess.run([*truss, "remote", "add", "bench", url, "--api-key", key, "--use"],
                       env=user_env, check=True, capture_output=True)
        client = httpx.Client(base_url=url, headers={"Authorization": f"Api-Key {key}"}, timeout=60)

        def push() -> tuple[float, float | None, dict]:
            known = {d["id"] for d in client.get("/v1/models/hello/deployments").json().get("deployments", [])} \
                if client.get("/v1/models/hello").status_code == 200 else set()
            started = time.perf_counter()
            watcher = ActiveWatcher(client, "hello", known, started)
            watcher.start()
            result = subprocess.run([*truss, "push", str(model_dir), "--wait", "--output", "json"],
                                    env=user_env, capture_output=True, text=True)
            elapsed = time.perf_counter() - started
            watcher.stop.set()
            watcher.join()
            if result.returncode != 0:
                raise RuntimeError(f"push exited {result.returncode}:\n{result.stderr}")
            return elapsed, watcher.active_at, json.loads(result.stdout)

        def delete(answer: dict) -> None:
            d = answer["deployment"]
            client.delete(f"/v1/models/{d['model_id']}/deployments/{d['id']}").raise_for_status()

        t0 = time.perf_counter()
        _, _, answer = push()
        warmup = time.perf_counter() - t0
        delete(answer)
        print(f"warm-up push (builds the environment): {warmup:.2f} s", file=sys.stderr, flush=True)
        for n in range(args.rounds):
            for case in CASES:
                edit(model_dir, case, n)
                elapsed, active_at, answer = push()
                uploaded = len(answer["uploaded_files"])
                delete(answer)
                times[case].append(elapsed)
                seen[case].append(active_at)
                print(f"round {n + 1}/{args.rounds} {case:14s} {elapsed:6.2f} s  (ACTIVE seen at "
                      f"{active_at if active_at is None else round(active_at, 2)} s, {uploaded} files uploaded)",
                      file=sys.stderr, flush=True)
        cli_start = []
        for _ in range(3):
            t0 = time.perf_counter()
            subprocess.run([*truss, "remote", "list"], env=user_env, check=True, capture_output=True)
            cli_start.append(time.perf_counter() - t0)
        memory = rss_kib(cp.pid)
        client.close()
        ok = True
    finally:
        stop_controlplane(cp, work / "cp-data-dir")
        if ok and not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"kept {work}", file=sys.stderr)

    print(f"\n{'push --wait to ACTIVE':24s}{'min s':>8s}{'median s':>10s}{'max s':>8s}{'ACTIVE seen (median)':>22s}")
    for case in CASES:
        row = times[case]
        observed = [s for s in seen[case] if s is not None]
        print(f"{case:24s}{min(row):8.2f}{statistics.median(row):10.2f}{max(row):8.2f}"
              f"{(statistics.median(observed) if observed else float('nan')):22.2f}")
    print(f"\nwarm-up push (environment built): {warmup:.2f} s; CLI start-up (`truss remote list`): "
          f"{statistics.median(cli_start):.2f} s median of 3; control plane RSS after the run: "
          f"{memory['VmRSS'] / 1024:.1f} MiB (peak {memory['VmHWM'] / 1024:.1f} MiB); {args.rounds} rounds")


if __name__ == "__main__":
    main()
