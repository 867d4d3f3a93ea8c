#!/usr/bin/env python3
"""Latency the model server adds over a bare FastAPI app doing the same work, side by side.

    python benchmarks/predict_overhead.py [--model-dir examples/hello] [--requests 3000] [--seconds 5] [--rounds 3]
                                          [--development]   # also a development replica (live-reload control layer)

The model server serves MODEL_DIR (examples/hello by default: `predict` returns
{"greeting": "Hello, <name>!"}). The baseline is a bare FastAPI app whose route does hello's
work inline: parse the JSON body, build the same greeting dict, dump it as JSON. Both run in
the same Python with the same uvicorn settings (asyncio loop, default HTTP parser, no access
log), so the difference is the model server's own code: routing, body parsing, the thread
hop for a sync `predict`, the concurrency semaphore, metrics and encoding. For hello both
must give the same answer, or the run stops. With another MODEL_DIR the baseline still does
hello's work, so the difference then includes that model's own cost.

The client is a raw-socket HTTP/1.1 client (keep-alive, TCP_NODELAY): an httpx client
costs ~0.4 ms of CPU per request, more than what is being measured. Servers are pinned to
CPU 0 and the client to CPU 1 (on machines with 2+ CPUs). Each round measures both servers,
alternating which goes first; the figures are medians over the rounds.

Sequential: REQUESTS POSTs one after the other on one connection (after a warm-up).
Concurrent: CONNECTIONS keep-alive connections, one request in flight on each, for SECONDS.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import selectors
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
PATH = "/v1/models/model:predict"
BODY = b'{"name": "benchmark"}'
DEFAULT_MODEL_DIR = REPO_ROOT / "examples" / "hello"

BARE_FASTAPI = '''
import json
import sys

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import Response

app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)


@app.post("/v1/models/{model_name}:predict")
async def predict(model_name: str, request: Request):
    model_input = json.loads(await request.body())
    name = model_input.get("name", "world") if isinstance(model_input, dict) else "world"
    return Response(json.dumps({"greeting": f"Hello, {name}!"}), media_type="application/json")


uvicorn.run(app, host=sys.argv[1], port=int(sys.argv[2]), loop="asyncio", lifespan="off",
            access_log=False, log_level="warning")
'''


# ---------------------------------------------------------------- raw HTTP client


def request_bytes(port: int) -> bytes:
    head = (
        f"POST {PATH} HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(BODY)}\r\n\r\n"
    )
    return head.encode() + BODY


def take_response(buf: bytearray):
    """(status, body) from the front of `buf` (removed from it), or None if incomplete."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = bytes(buf[:end]).lower()
    start = end + 4
    at = head.find(b"content-length:")
    if at < 0:
        raise RuntimeError("benchmark responses must carry a content-length")
    stop = head.find(b"\r\n", at)
    length = int(head[at + 15 : stop if stop >= 0 else len(head)])
    if len(buf) < start + length:
        return None
    status, body = int(head[9:12]), bytes(buf[start : start + length])
    del buf[: start + length]
    return status, body


class Connection:
    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection((HOST, port), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()

    def roundtrip(self, request: bytes):
        self.sock.sendall(request)
        while True:
            response = take_response(self.buf)
            if response is not None:
                return response
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("server closed the connection")
            self.buf += data

    def close(self) -> None:
        self.sock.close()


def sequential(port: int, requests: int, warmup: int) -> dict:
    request = request_bytes(port)
    conn = Connection(port)
    try:
        status, reference = conn.roundtrip(request)
        if status != 200:
            raise RuntimeError(f"predict failed: {status} {reference[:200]!r}")
        for _ in range(warmup):
            conn.roundtrip(request)
        samples = []
        clock = time.perf_counter_ns
        gc.collect()
        gc.disable()
        try:
            for _ in range(requests):
                t0 = clock()
                status, body = conn.roundtrip(request)
                samples.append(clock() - t0)
                if status != 200 or body != reference:
                    raise RuntimeError(f"bad response during the run: {status} {body[:200]!r}")
        finally:
            gc.enable()
    finally:
        conn.close()
    samples.sort()
    return {"p50_us": percentile(samples, 50) / 1e3, "p99_us": percentile(samples, 99) / 1e3, "answer": json.loads(reference)}


def concurrent(port: int, connections: int, seconds: float, warmup: float) -> dict:
    request = request_bytes(port)
    selector = selectors.DefaultSelector()
    socks, bufs = [], []
    for index in range(connections):
        sock = socket.create_connection((HOST, port), timeout=30)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        selector.register(sock, selectors.EVENT_READ, index)
        socks.append(sock)
        bufs.append(bytearray())
    done = errors = 0
    clock = time.perf_counter
    begin = clock()
    measure_from, measure_to = begin + warmup, begin + warmup + seconds
    for sock in socks:
        sock.sendall(request)
    gc.disable()
    try:
        while clock() < measure_to:
            for key, _ in selector.select(timeout=1.0):
                sock, buf = socks[key.data], bufs[key.data]
                data = sock.recv(65536)
                if not data:
                    raise ConnectionError("server closed a connection under load")
                buf += data
                response = take_response(buf)
                if response is None:
                    continue
                if measure_from <= clock() < measure_to:
                    done += 1
                    errors += response[0] != 200
                sock.sendall(request)
    finally:
        gc.enable()
        for sock in socks:
            sock.close()
        selector.close()
    return {"rps": done / seconds, "errors": errors}


def cpu_seconds(pid: int) -> float:
    """User+system CPU time of a process (Linux), a steadier figure than wall-clock latency."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(sorted_samples: list, p: float) -> float:
    rank = max(1, -(-len(sorted_samples) * p // 100))
    return sorted_samples[int(rank) - 1]


# ---------------------------------------------------------------- servers


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def write_replica_config(model_dir: Path, path: Path) -> Path:
    """What `truss run` gives the server: the replica config written from config.yaml."""
    sys.path.insert(0, str(REPO_ROOT))  # this checkout's truss_cli, whatever is installed
    from truss_cli.config import load_config
    from truss_cli.config_to_replica import replica_config_for

    path.write_text(replica_config_for(load_config(model_dir).config, secret_values=True).to_json())
    return path


def start(argv: list, env: dict, port: int, log: Path, cpus) -> subprocess.Popen:
    def pin():
        if cpus:
            os.sched_setaffinity(0, cpus)

    with open(log, "ab") as out:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, preexec_fn=pin)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{argv} exited with {proc.returncode}; see {log}")
        try:
            conn = Connection(port)
            status, _ = conn.roundtrip(request_bytes(port))
            conn.close()
            if status == 200:
                return proc
        except OSError:
            pass
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"{argv} not answering predict after 60 s; see {log}")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, default=DEFAULT_MODEL_DIR,
                        help="model directory served by the model server (default: examples/hello)")
    parser.add_argument("--requests", type=int, default=3000, help="sequential requests per server and round")
    parser.add_argument("--warmup", type=int, default=300, help="sequential warm-up requests")
    parser.add_argument("--connections", type=int, default=8, help="connections in the concurrent run")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of the concurrent run")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (medians are reported)")
    parser.add_argument("--python", default=sys.executable, help="Python that runs both servers")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--development", action="store_true",
                        help="also measure a development replica (python -m truss_cli.server.control: the live-reload "
                             "control layer, issue 10) and report what it adds over the plain model server")
    args = parser.parse_args()

    pin = len(os.sched_getaffinity(0)) >= 2
    if pin:
        os.sched_setaffinity(0, {1})
    model_dir = args.model_dir.resolve()
    if not (model_dir / "config.yaml").is_file():
        parser.error(f"--model-dir: {args.model_dir}: no config.yaml there")
    work = Path(tempfile.mkdtemp(prefix="predict-overhead-"))
    (work / "bare_fastapi.py").write_text(BARE_FASTAPI)
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), PYTHONUNBUFFERED="1")
    replica_config = write_replica_config(model_dir, work / "replica.json")

    servers = {
        "truss-cli": lambda port: [
            args.python, "-m", "truss_cli.server", str(model_dir), "--replica-config", str(replica_config),
            "--host", HOST, "--port", str(port),
        ],
        "bare_fastapi": lambda port: [args.python, str(work / "bare_fastapi.py"), HOST, str(port)],
    }
    if args.development:
        # The control layer patches its model directory in place: it gets a copy. Its token is
        # an environment variable here (a benchmark's throwaway value).
        shutil.copytree(model_dir, work / "development-model", ignore=shutil.ignore_patterns("__pycache__"))
        env["TRUSS_CONTROL_TOKEN"] = "benchmark-token"
        servers["truss-cli-dev"] = lambda port: [
            args.python, "-m", "truss_cli.server.control", str(work / "development-model"),
            "--replica-config", str(replica_config), "--host", HOST, "--port", str(port), "--control-port", "0",
        ]
    results: dict = {name: [] for name in servers}
    answers: dict = {}
    ok = False
    try:
        for round_index in range(args.rounds):
            order = list(servers) if round_index % 2 == 0 else list(reversed(servers))
            for name in order:
                port = free_port()
                proc = start(servers[name](port), env, port, work / f"{name}.log", {0} if pin else None)
                try:
                    cpu_before = cpu_seconds(proc.pid)
                    seq = sequential(port, args.requests, args.warmup)
                    seq["server_cpu_per_req_us"] = (cpu_seconds(proc.pid) - cpu_before) / (args.requests + args.warmup) * 1e6
                    con = concurrent(port, args.connections, args.seconds, warmup=1.0)
                finally:
                    stop(proc)
                answers[name] = seq.pop("answer")
                results[name].append({**seq, **con})
                print(f"round {round_index + 1}/{args.rounds} {name:12s} p50 {seq['p50_us']:7.1f} us  "
                      f"p99 {seq['p99_us']:7.1f} us  {con['rps']:7.0f} req/s", file=sys.stderr, flush=True)
            if model_dir == DEFAULT_MODEL_DIR and answers["truss-cli"] != answers["bare_fastapi"]:
                raise RuntimeError(f"the servers answer differently, so they do different work: {answers}")
        ok = True
    finally:
        if ok:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"logs kept in {work}", file=sys.stderr)

    summary = {name: {key: statistics.median(r[key] for r in runs) for key in runs[0]} for name, runs in results.items()}
    ours, bare = summary["truss-cli"], summary["bare_fastapi"]
    comparison = {
        "added_p50_us": ours["p50_us"] - bare["p50_us"],
        "added_p99_us": ours["p99_us"] - bare["p99_us"],
        "added_server_cpu_per_req_us": ours["server_cpu_per_req_us"] - bare["server_cpu_per_req_us"],
        "throughput_ratio": ours["rps"] / bare["rps"],
    }
    development = None
    if "truss-cli-dev" in summary:
        dev = summary["truss-cli-dev"]
        development = {
            "added_p50_us": dev["p50_us"] - ours["p50_us"],
            "added_p99_us": dev["p99_us"] - ours["p99_us"],
            "throughput_ratio": dev["rps"] / ours["rps"],
        }
    if args.json:
        print(json.dumps({"servers": summary, "rounds": results, "truss_cli_vs_bare_fastapi": comparison,
                          "development_vs_truss_cli": development}, indent=2))
        return
    print(f"\n{'server':14s}{'p50 us':>10s}{'p99 us':>10s}{'CPU us/req':>12s}{'req/s (' + str(args.connections) + ' conns)':>22s}{'errors':>8s}")
    for name, row in summary.items():
        print(f"{name:14s}{row['p50_us']:10.1f}{row['p99_us']:10.1f}{row['server_cpu_per_req_us']:12.1f}"
              f"{row['rps']:22.0f}{row['errors']:8.0f}")
    print(f"\nadded by the model server: p50 {comparison['added_p50_us']:+.1f} us, "
          f"p99 {comparison['added_p99_us']:+.1f} us, server CPU {comparison['added_server_cpu_per_req_us']:+.1f} us/req; "
          f"throughput ratio {comparison['throughput_ratio']:.3f} "
          f"(medians of {args.rounds} rounds; pinned: {'server CPU 0, client CPU 1' if pin else 'no'}; "
          f"model: {model_dir.relative_to(REPO_ROOT) if model_dir.is_relative_to(REPO_ROOT) else model_dir})")
    if development is not None:
        print(f"added by the development control layer (truss-cli-dev vs truss-cli): p50 {development['added_p50_us']:+.1f} us, "
              f"p99 {development['added_p99_us']:+.1f} us; throughput ratio {development['throughput_ratio']:.3f}")


if __name__ == "__main__":
    main()
