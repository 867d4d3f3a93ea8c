#!/usr/bin/env python3
"""A rolling deploy under a steady load: failed requests and latency before the rollout vs
during it (issue 11).

    python benchmarks/rollout.py [--rate 40] [--replicas 3] [--surge 33] [--stabilization 5] [--before 20]

One control plane on the process runtime (its own data and cache directories under a temporary
directory). Two deployments of one model answering {"version": "v1"} / {"version": "v2"} are
pushed (untimed), each predict taking `--predict-ms` (50 ms, as in
tests/test_controlplane_rollout_load.py: requests meet retiring replicas and the gateway's
concurrency cap of 1 per replica); each runs `--replicas` replicas when awake (min_replica = max_replica), v1
serves production and v2 waits at zero (as a promotion's SCALE_TO_ZERO cleanup leaves the
previous deployment). Production's promotion settings ask for a rolling deploy with
`max_surge_percent` and `stabilization_time_seconds` as given.

A second process (benchmarks/load_generator.py) sends `--rate` production predicts per second on
a fixed schedule for the whole run: `--before` seconds before the promotion (the baseline, less
its first `--warmup` seconds while the load process opens its connections), the
rolling promotion v1 -> v2 until SUCCEEDED (every step: a v2 replica starts, the split moves,
the wait, a v1 replica retires gracefully), and a few seconds after. Each request is put in the
phase it was sent in; a request is failed when it got no 2xx answer.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cold_start import push, wait_for  # noqa: E402
from cp_support import REPO_ROOT, start_controlplane, stop_controlplane  # noqa: E402
from load_generator import failed, read_results  # noqa: E402

MODEL = """
import time


class Model:
    def predict(self, request):
        time.sleep(SECONDS)
        return {"version": VERSION}
"""


def write_model(root: Path, version: str, seconds: float) -> Path:
    model_dir = root / version
    model_dir.mkdir(parents=True)
    (model_dir / "config.yaml").write_text("model_name: rollout\npython_version: py311\n")
    (model_dir / "model").mkdir()
    (model_dir / "model" / "__init__.py").write_text("")
    (model_dir / "model" / "model.py").write_text(MODEL.replace("VERSION", repr(version)).replace("SECONDS", repr(seconds)))
    return model_dir


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def summary(results: list[dict]) -> dict:
    latencies = [r["latency"] for r in results if not failed(r)]
    return {"requests": len(results), "failed": sum(1 for r in results if failed(r)),
            "p50": statistics.median(latencies) if latencies else float("nan"),
            "p99": percentile(latencies, 99) if latencies else float("nan")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=40.0, help="production predicts per second")
    parser.add_argument("--predict-ms", type=float, default=50.0,
                        help="how long each predict takes (the test's model: 50 ms)")
    parser.add_argument("--replicas", type=int, default=3, help="replicas of each deployment (T)")
    parser.add_argument("--surge", type=int, default=33, help="max_surge_percent (1-50)")
    parser.add_argument("--stabilization", type=int, default=5, help="stabilization_time_seconds")
    parser.add_argument("--before", type=float, default=20.0, help="seconds of load before the promotion")
    parser.add_argument("--warmup", type=float, default=2.0,
                        help="the first seconds of load, left out (the load process opens its connections)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="truss-rollout-"))
    env = {**os.environ, "TRUSS_CACHE_DIR": str(base / "cache"), "PYTHONPATH": str(REPO_ROOT)}
    data_dir = base / "cp"
    process, url, key = start_controlplane(data_dir, env)
    load = None
    try:
        with httpx.Client(base_url=url, headers={"Authorization": f"Api-Key {key}"}, timeout=120) as client:
            v1 = wait_for(client, push(client, write_model(base, "v1", args.predict_ms / 1000), "rollout"), "ACTIVE")
            v2 = wait_for(client, push(client, write_model(base, "v2", args.predict_ms / 1000), "rollout"), "ACTIVE")
            model_id = v1["model_id"]
            scaling = f"/v1/models/{model_id}/deployments/{{}}/autoscaling_settings"
            for deployment in (v1, v2):
                client.patch(scaling.format(deployment["id"]), json={
                    "min_replica": args.replicas, "max_replica": args.replicas, "scale_down_delay": 900,
                }).raise_for_status()
            # v2 waits at zero with its floor kept, as a promotion's SCALE_TO_ZERO cleanup leaves a
            # deployment (raising min_replica on one at zero would wake it): promote v2 and back,
            # instantly; then a request wakes v1, which the first promotion's cleanup put to sleep.
            promote = f"/v1/models/{model_id}/environments/production/promote"
            client.post(promote, json={"deployment_id": v2["id"]}).raise_for_status()
            wait_for(client, v1, "SCALED_TO_ZERO")
            client.post(promote, json={"deployment_id": v1["id"]}).raise_for_status()
            wait_for(client, v2, "SCALED_TO_ZERO")
            client.post(f"/model-{model_id}/production/predict", json={}).raise_for_status()
            client.patch(f"/v1/models/{model_id}/environments/production", json={"promotion_settings": {
                "rolling_deploy": True, "rolling_deploy_config": {
                    "max_surge_percent": args.surge, "stabilization_time_seconds": args.stabilization}},
            }).raise_for_status()
            while client.get(f"/v1/models/{model_id}/deployments/{v1['id']}").json()["active_replica_count"] < args.replicas:
                time.sleep(0.2)

            out = base / "results.jsonl"
            stop_file = base / "stop"
            load = subprocess.Popen(
                [sys.executable, str(Path(__file__).resolve().parent / "load_generator.py"), "--url", url, "--key", key,
                 "--path", f"/model-{model_id}/production/predict", "--rate", str(args.rate), "--duration", "3600",
                 "--out", str(out), "--stop-file", str(stop_file)], env=env, stdout=subprocess.DEVNULL)
            loaded = time.time()
            time.sleep(args.before)
            began = time.time()
            promoted = client.post(f"/v1/models/{model_id}/environments/production/promote",
                                   json={"deployment_id": v2["id"]}).raise_for_status().json()
            steps = promoted["in_progress_promotion"]["steps"]
            while True:
                promotion = client.get(f"/v1/models/{model_id}/environments/production/promotion").json()["promotion"]
                if promotion["finished_at"]:
                    break
                time.sleep(0.2)
            ended = time.time()
            time.sleep(3)
            stop_file.write_text("")
            load.wait(timeout=300)
            results = read_results(str(out))
    finally:
        if load is not None and load.poll() is None:
            load.kill()
        stop_controlplane(process, data_dir)
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)

    before = summary([r for r in results if loaded + args.warmup <= r["sent"] < began])
    during = summary([r for r in results if began <= r["sent"] <= ended])
    after = summary([r for r in results if r["sent"] > ended])
    versions = sorted({str(r["version"]) for r in results if r["sent"] > ended + 1})
    print(f"rolling deploy v1 -> v2: {promotion['status']} in {ended - began:.1f} s, {steps} steps "
          f"(T={args.replicas}, max_surge_percent {args.surge}, stabilization {args.stabilization} s), "
          f"{args.rate:g} req/s, predict {args.predict_ms:g} ms; answers after it: {', '.join(versions)}")
    print(f"{'':<8}{'requests':>10}{'failed':>8}{'p50 ms':>10}{'p99 ms':>10}")
    for name, row in (("before", before), ("during", during), ("after", after)):
        print(f"{name:<8}{row['requests']:>10}{row['failed']:>8}{row['p50'] * 1000:>10.2f}{row['p99'] * 1000:>10.2f}")
    print(f"during/before: p50 x{during['p50'] / before['p50']:.2f}, p99 x{during['p99'] / before['p99']:.2f}; "
          f"failed {during['failed']} during vs {before['failed']} before")


if __name__ == "__main__":
    main()
