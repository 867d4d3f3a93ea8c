#!/usr/bin/env python3
"""The gateway's CPU per predict, for several checkouts in turn: finer than gateway_overhead.py's p50.

    python benchmarks/gateway_cpu.py [--cycles 7] [--requests 6000] CHECKOUT [CHECKOUT ...]
    python benchmarks/gateway_cpu.py --code [--requests 20000] CHECKOUT [CHECKOUT ...]

On a shared machine the added p50 of gateway_overhead.py moves by ±50 µs from run to run;
a change of a few µs in the gateway's code does not show there. Two finer measures:

- default: one replica (this checkout's model server on examples/hello, CPU 0) and, for each
  CHECKOUT in turn, the benchmark's gateway (gateway_overhead.GATEWAY_SCRIPT: Gateway,
  RoutingTable, GatewayAuthorizer over a real store) from that checkout's truss_cli, unpinned;
  REQUESTS sequential predicts with an API key, and the gateway process's CPU time from
  /proc/<pid>/stat (user + system) divided by them. The order of the checkouts is reversed
  every other cycle; the medians per checkout are printed at the end.
- `--code`: the gateway's own code alone, no sockets and no ASGI server: `Gateway.__call__` in
  a loop with a synthetic scope (the same predict with its key) and an upstream answering from
  memory; CPU per request, minimum and median of 7 rounds, each checkout in a subprocess.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gateway_overhead as go  # noqa: E402
import predict_overhead as po  # noqa: E402

CODE_SCRIPT = '''
import asyncio, statistics, sys, tempfile, time
from pathlib import Path
from truss_cli.controlplane.auth import GatewayAuthorizer
from truss_cli.controlplane.gateway import Gateway, Replica, RoutingTable
from truss_cli.controlplane.gateway.headers import response_headers
from truss_cli.controlplane.store import Store

ANSWER = b'{"greeting":"Hello, benchmark!"}'
LINES = [b"date: Mon, 30 Nov 2026 01:37:28 GMT", b"server: uvicorn", b"content-length: 32",
         b"content-type: application/json"]

class Answer:  # what upstream.UpstreamResponse gives the gateway, headers filtered as it does
    status, content_length = 200, len(ANSWER)
    def __init__(self): self.headers = response_headers(LINES)
    async def read(self): return ANSWER
    def release(self): pass

class Upstream:
    async def send(self, *args): return Answer()
    async def aclose(self): pass

store = Store.open(Path(tempfile.mkdtemp()))
key = store.api_keys.create("admin").plaintext
table = RoutingTable()
table.set_model("hello", {"production": [("d1", 1.0)]})
table.set_replicas("d1", [Replica("r1", "http://127.0.0.1:9")])
gateway = Gateway(table, GatewayAuthorizer(store), upstream=Upstream())
body = b'{"name": "benchmark"}'
scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
         "path": "/model-hello/production/predict", "raw_path": b"/model-hello/production/predict",
         "query_string": b"", "root_path": "", "client": ("127.0.0.1", 5555), "server": ("127.0.0.1", 1),
         "headers": [(b"host", b"127.0.0.1:1"), (b"content-type", b"application/json"),
                     (b"content-length", str(len(body)).encode()), (b"authorization", ("Api-Key " + key).encode())]}
message = {"type": "http.request", "body": body, "more_body": False}
statuses = []
async def receive(): return message
async def send(m):
    if m["type"] == "http.response.start": statuses.append(m["status"])
async def run(n):
    for _ in range(n):
        await gateway(dict(scope), receive, send)
async def main(n):
    await run(2000)
    rounds = []
    for _ in range(7):
        started = time.process_time_ns(); await run(n); rounds.append((time.process_time_ns() - started) / n / 1000)
    assert set(statuses) == {200}, set(statuses)
    print(min(rounds), statistics.median(rounds))
asyncio.run(main(int(sys.argv[1])))
'''


def code_cost(checkouts: list[str], requests: int) -> None:
    elsewhere = tempfile.mkdtemp(prefix="gateway-code-")  # `python -c` imports from its working directory first
    for checkout in checkouts:
        out = subprocess.run([sys.executable, "-c", CODE_SCRIPT, str(requests)], env=dict(os.environ, PYTHONPATH=checkout),
                             cwd=elsewhere, capture_output=True, text=True, check=True).stdout.split()
        print(f"{checkout}: gateway code {float(out[0]):.2f} us per request (min of 7 rounds), median {float(out[1]):.2f} us")


def process_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_per_predict(checkouts: list[str], cycles: int, requests: int) -> None:
    pin = len(os.sched_getaffinity(0)) >= 2
    work = Path(tempfile.mkdtemp(prefix="gateway-cpu-"))
    (work / "gateway.py").write_text(go.GATEWAY_SCRIPT)
    env = dict(os.environ, PYTHONPATH=str(po.REPO_ROOT), PYTHONUNBUFFERED="1")
    config = po.write_replica_config(po.DEFAULT_MODEL_DIR, work / "replica.json")
    replica_port = po.free_port()
    replica = po.start([sys.executable, "-m", "truss_cli.server", str(po.DEFAULT_MODEL_DIR), "--replica-config", str(config),
                        "--host", po.HOST, "--port", str(replica_port)], env, replica_port, work / "replica.log", {0} if pin else None)
    if pin:
        os.sched_setaffinity(0, {1})
    go.with_path(go.GATEWAY_PATH)
    go.with_api_key(go.admin_key(work / "controlplane"))
    results: dict[str, list[float]] = {checkout: [] for checkout in checkouts}
    try:
        for cycle in range(cycles):
            for checkout in checkouts if cycle % 2 == 0 else list(reversed(checkouts)):
                port = po.free_port()
                gateway = po.start([sys.executable, str(work / "gateway.py"), po.HOST, str(port),
                                    f"http://{po.HOST}:{replica_port}", str(work / "controlplane")],
                                   dict(env, PYTHONPATH=checkout), port, work / "gateway.log", None)
                try:
                    po.sequential(port, 500, 200)
                    before = process_cpu(gateway.pid)
                    timing = po.sequential(port, requests, 0)
                    us = 1e6 * (process_cpu(gateway.pid) - before) / requests
                finally:
                    po.stop(gateway)
                results[checkout].append(us)
                print(f"cycle {cycle + 1}/{cycles} {checkout}: {us:6.1f} us CPU per predict, p50 {timing['p50_us']:6.1f} us",
                      file=sys.stderr, flush=True)
    finally:
        po.stop(replica)
    for checkout, runs in results.items():
        print(f"{checkout}: median {statistics.median(runs):.1f} us CPU per predict ({', '.join(f'{r:.0f}' for r in runs)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkouts", nargs="+", help="directories holding a truss_cli package")
    parser.add_argument("--code", action="store_true", help="the gateway's own code alone, no sockets")
    parser.add_argument("--cycles", type=int, default=7)
    parser.add_argument("--requests", type=int, default=None)
    args = parser.parse_args()
    checkouts = [str(Path(c).resolve()) for c in args.checkouts]
    if args.code:
        code_cost(checkouts, args.requests or 20000)
    else:
        cpu_per_predict(checkouts, args.cycles, args.requests or 6000)


if __name__ == "__main__":
    main()
