#!/usr/bin/env python3
"""Latency the custom server replica (`truss_cli/server/custom/`) adds in front of a custom
server, side by side in one run.

    python benchmarks/custom_server_overhead.py [--requests 3000] [--seconds 5] [--rounds 3]

One custom server (a small asyncio HTTP server answering POST /predict with a fixed JSON
document, ~20 us of its own work) is started by the replica, as `truss run` starts it. Each
round sends the same predict directly to the custom server (POST /predict on its port) and
through the replica (POST /v1/models/model:predict on the replica's port), alternating which
goes first; the difference is the replica's: parsing the head, mapping the path, a pooled
keep-alive connection to the custom server, copying the answer back with the replica id.

The client is predict_overhead.py's raw-socket HTTP/1.1 client (keep-alive, TCP_NODELAY).
Both servers run on CPU 0, the client on CPU 1 (with 2+ CPUs). Medians over the rounds.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from predict_overhead import HOST, Connection, cpu_seconds, free_port, percentile  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
BODY = b'{"name": "benchmark"}'

CUSTOM_SERVER = r'''
import asyncio
import sys

ANSWER = b'{"greeting": "Hello, benchmark!"}'
RESPONSE = (b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
            + str(len(ANSWER)).encode() + b"\r\n\r\n" + ANSWER)


async def handle(reader, writer):
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if length:
                await reader.readexactly(length)
            writer.write(RESPONSE if head.startswith(b"POST /predict ") or head.startswith(b"GET /health ") else
                         b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        writer.close()


async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", int(sys.argv[1]))
    async with server:
        await server.serve_forever()

asyncio.run(main())
'''


def request_bytes(path: str, port: int) -> bytes:
    head = f"POST {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nContent-Type: application/json\r\nContent-Length: {len(BODY)}\r\n\r\n"
    return head.encode() + BODY


def sequential(port: int, path: str, requests: int, warmup: int) -> dict:
    request = request_bytes(path, port)
    conn = Connection(port)
    try:
        for _ in range(warmup):
            status, body = conn.roundtrip(request)
            if status != 200:
                raise RuntimeError(f"predict failed: {status} {body[:200]!r}")
        samples = []
        clock = time.perf_counter_ns
        gc.collect()
        gc.disable()
        try:
            for _ in range(requests):
                t0 = clock()
                status, _ = conn.roundtrip(request)
                samples.append(clock() - t0)
                if status != 200:
                    raise RuntimeError(f"bad status during the run: {status}")
        finally:
            gc.enable()
    finally:
        conn.close()
    samples.sort()
    return {"p50_us": percentile(samples, 50) / 1e3, "p99_us": percentile(samples, 99) / 1e3}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=3000, help="sequential requests per path and round")
    parser.add_argument("--warmup", type=int, default=300, help="warm-up requests")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (medians are reported)")
    parser.add_argument("--python", default=sys.executable, help="Python that runs the replica and the custom server")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()

    pin = len(os.sched_getaffinity(0)) >= 2
    work = Path(tempfile.mkdtemp(prefix="custom-server-overhead-"))
    (work / "custom_server.py").write_text(CUSTOM_SERVER)
    server_port = free_port()
    status_file = work / "status.json"
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), TRUSS_STATUS_FILE=str(status_file))
    argv = [
        args.python, "-m", "truss_cli.server.custom",
        "--start-command", f"exec {args.python} {work / 'custom_server.py'} {server_port}",
        "--server-port", str(server_port), "--predict-endpoint", "/predict",
        "--readiness-endpoint", "/health", "--liveness-endpoint", "/health", "--host", HOST, "--port", "0",
    ]
    with open(work / "replica.log", "wb") as log:
        # Pinned before exec, so the custom server it starts inherits CPU 0 too.
        replica = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   preexec_fn=(lambda: os.sched_setaffinity(0, {0})) if pin else None)
    if pin:
        os.sched_setaffinity(0, {1})
    results: dict = {"direct": [], "through the replica": []}
    try:
        deadline = time.monotonic() + 60
        while True:
            status = json.loads(status_file.read_text()) if status_file.exists() else {}
            if status.get("phase") == "ready":
                break
            if replica.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the replica did not become ready; see {work / 'replica.log'}")
            time.sleep(0.05)
        targets = {"direct": (server_port, "/predict"), "through the replica": (status["port"], "/v1/models/model:predict")}
        replica_cpu = 0.0
        for round_index in range(args.rounds):
            order = list(targets) if round_index % 2 == 0 else list(reversed(targets))
            for name in order:
                port, path = targets[name]
                before = cpu_seconds(replica.pid)
                row = sequential(port, path, args.requests, args.warmup)
                if name == "through the replica":
                    replica_cpu += (cpu_seconds(replica.pid) - before) / (args.requests + args.warmup)
                results[name].append(row)
                print(f"round {round_index + 1}/{args.rounds} {name:20s} p50 {row['p50_us']:7.1f} us  p99 {row['p99_us']:7.1f} us",
                      file=sys.stderr, flush=True)
    finally:
        replica.terminate()
        replica.wait(40)
    shutil.rmtree(work, ignore_errors=True)

    summary = {name: {key: statistics.median(r[key] for r in rows) for key in rows[0]} for name, rows in results.items()}
    direct, proxied = summary["direct"], summary["through the replica"]
    comparison = {
        "added_p50_us": proxied["p50_us"] - direct["p50_us"],
        "added_p99_us": proxied["p99_us"] - direct["p99_us"],
        "latency_ratio_p50": proxied["p50_us"] / direct["p50_us"],
        "replica_cpu_per_req_us": replica_cpu / args.rounds * 1e6,
    }
    if args.json:
        print(json.dumps({"paths": summary, "rounds": results, "comparison": comparison}, indent=2))
        return
    print(f"\n{'path':22s}{'p50 us':>10s}{'p99 us':>10s}")
    for name, row in summary.items():
        print(f"{name:22s}{row['p50_us']:10.1f}{row['p99_us']:10.1f}")
    print(f"\nadded by the replica: p50 {comparison['added_p50_us']:+.1f} us, p99 {comparison['added_p99_us']:+.1f} us "
          f"(p50 ratio {comparison['latency_ratio_p50']:.2f}); replica CPU {comparison['replica_cpu_per_req_us']:.1f} us/req "
          f"(medians of {args.rounds} rounds; pinned: {'servers CPU 0, client CPU 1' if pin else 'no'})")


if __name__ == "__main__":
    main()
