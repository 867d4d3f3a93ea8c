#!/usr/bin/env python3
"""Latency and throughput the prediction gateway adds over calling a replica directly, side by side.

    python benchmarks/gateway_overhead.py [--model-dir examples/hello] [--requests 3000] [--seconds 5] [--rounds 3]

One replica (the model server on MODEL_DIR, examples/hello by default) and one gateway in
front of it, as the control plane runs it: truss_cli.controlplane.gateway.Gateway with a
RoutingTable naming that replica and the control plane's GatewayAuthorizer over a real store
(SQLite in a temporary directory, one admin key), served by uvicorn with its default HTTP
implementation (httptools when installed, as it is with truss-cli's dependencies). Each
round measures the same predicts direct to the replica and through the gateway
(`/model-hello/production/predict`), alternating which goes first, with the raw-socket client
of predict_overhead.py (an httpx client would cost more CPU than what is measured). Every
request carries the `Authorization: Api-Key` header (the replica ignores it; the gateway
checks it and strips it). Both answers must be the same.

Pinning: the replica on CPU 0 and the client on CPU 1 (with 2+ CPUs); the gateway is not
pinned (on a 2-CPU machine it shares a CPU with one of them, as it would share a machine).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import predict_overhead as po  # noqa: E402  (one raw-socket client for both benchmarks)

REPO_ROOT = po.REPO_ROOT
DIRECT_PATH = po.PATH
GATEWAY_PATH = "/model-hello/production/predict"

GATEWAY_SCRIPT = '''
import sys
from pathlib import Path

import uvicorn

from truss_cli.controlplane.auth import GatewayAuthorizer
from truss_cli.controlplane.gateway import Gateway, Replica, RoutingTable
from truss_cli.controlplane.store import Store

store = Store.open(Path(sys.argv[4]))
table = RoutingTable()
table.set_model("hello", {"production": [("d1", 1.0)]})
table.set_replicas("d1", [Replica("r1", sys.argv[3])])
uvicorn.run(Gateway(table, GatewayAuthorizer(store)), host=sys.argv[1], port=int(sys.argv[2]), loop="asyncio",
            lifespan="on", access_log=False, log_level="warning")
'''


def with_path(path: str):
    """predict_overhead's client, sending to `path` (the module reads its PATH global)."""
    po.PATH = path


def admin_key(data_dir: Path) -> str:
    """A new admin key in the control plane store at `data_dir` (created), for the gateway to check."""
    from truss_cli.controlplane.store import Store  # this checkout's (po put REPO_ROOT on sys.path)

    with Store.open(data_dir) as store:
        return store.api_keys.create("admin").plaintext


def with_api_key(key: str) -> None:
    """predict_overhead's requests, with an Authorization header (the same bytes to both targets)."""
    plain = po.request_bytes

    def request_bytes(port: int) -> bytes:
        request = plain(port)
        end = request.index(b"\r\n") + 2
        return request[:end] + b"Authorization: Api-Key " + key.encode() + b"\r\n" + request[end:]

    po.request_bytes = request_bytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, default=po.DEFAULT_MODEL_DIR)
    parser.add_argument("--requests", type=int, default=3000, help="sequential requests per target and round")
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=5.0, help="length of the concurrent run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    pin = len(os.sched_getaffinity(0)) >= 2
    if pin:
        os.sched_setaffinity(0, {1})
    model_dir = args.model_dir.resolve()
    work = Path(tempfile.mkdtemp(prefix="gateway-overhead-"))
    (work / "gateway.py").write_text(GATEWAY_SCRIPT)
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), PYTHONUNBUFFERED="1")
    replica_config = po.write_replica_config(model_dir, work / "replica.json")
    replica_port, gateway_port = po.free_port(), po.free_port()
    replica = gateway = None
    results: dict = {"direct": [], "gateway": []}
    answers: dict = {}
    ok = False
    try:
        with_path(DIRECT_PATH)
        replica = po.start(
            [sys.executable, "-m", "truss_cli.server", str(model_dir), "--replica-config", str(replica_config),
             "--host", po.HOST, "--port", str(replica_port)],
            env, replica_port, work / "replica.log", {0} if pin else None,
        )
        with_path(GATEWAY_PATH)
        with_api_key(admin_key(work / "controlplane"))
        gateway = po.start(
            [sys.executable, str(work / "gateway.py"), po.HOST, str(gateway_port), f"http://{po.HOST}:{replica_port}",
             str(work / "controlplane")],
            env, gateway_port, work / "gateway.log", None,
        )
        targets = {"direct": (replica_port, DIRECT_PATH), "gateway": (gateway_port, GATEWAY_PATH)}
        for round_index in range(args.rounds):
            order = list(targets) if round_index % 2 == 0 else list(reversed(targets))
            for name in order:
                port, path = targets[name]
                with_path(path)
                seq = po.sequential(port, args.requests, args.warmup)
                con = po.concurrent(port, args.connections, args.seconds, warmup=1.0)
                answers[name] = seq.pop("answer")
                results[name].append({**seq, **con})
                print(f"round {round_index + 1}/{args.rounds} {name:8s} p50 {seq['p50_us']:7.1f} us  "
                      f"p99 {seq['p99_us']:7.1f} us  {con['rps']:7.0f} req/s", file=sys.stderr, flush=True)
            if answers["direct"] != answers["gateway"]:
                raise RuntimeError(f"the gateway answers differently: {answers}")
        ok = True
    finally:
        for proc in (gateway, replica):
            if proc is not None:
                po.stop(proc)
        if ok:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"logs kept in {work}", file=sys.stderr)

    summary = {name: {key: statistics.median(r[key] for r in runs) for key in runs[0]} for name, runs in results.items()}
    direct, through = summary["direct"], summary["gateway"]
    comparison = {
        "added_p50_us": through["p50_us"] - direct["p50_us"],
        "added_p99_us": through["p99_us"] - direct["p99_us"],
        "throughput_ratio": through["rps"] / direct["rps"],
    }
    if args.json:
        print(json.dumps({"targets": summary, "rounds": results, "gateway_vs_direct": comparison}, indent=2))
        return
    print(f"\n{'target':10s}{'p50 us':>10s}{'p99 us':>10s}{'req/s (' + str(args.connections) + ' conns)':>22s}{'errors':>8s}")
    for name, row in summary.items():
        print(f"{name:10s}{row['p50_us']:10.1f}{row['p99_us']:10.1f}{row['rps']:22.0f}{row['errors']:8.0f}")
    print(f"\nadded by the gateway: p50 {comparison['added_p50_us']:+.1f} us, p99 {comparison['added_p99_us']:+.1f} us; "
          f"throughput ratio {comparison['throughput_ratio']:.3f} (medians of {args.rounds} rounds; "
          f"pinned: {'replica CPU 0, client CPU 1, gateway unpinned' if pin else 'no'})")


if __name__ == "__main__":
    main()
