#!/usr/bin/env python3
"""Save to served: from writing model/model.py to the first predict through the gateway that
returns the new behaviour, with `truss push --watch` running as a user runs it.

    python benchmarks/live_reload.py [--model-dir examples/hello] [--saves 10] [--new-connection-per-poll]
                                     [--runtimes process,docker]
                                     [--extra-methods N]   # N more methods in model.py (150: 610 lines)

One control plane per runtime named by `--runtimes` (default `process`; `process,docker` measures
both in one run, one after the other: `serve --port 0 --runtime R`, cp_support.py) and one user (own HOME,
~/.trussrc written by `truss remote add`). A copy of the model directory is pushed with
`python -m truss_cli push DIR --watch --output json` as a subprocess; once it prints
"Watching ...", each save rewrites model/model.py (a plain open/write, as an editor saving in
place) and polls `POST /model-{id}/development/predict` on the control plane (the gateway,
every 2 ms; one keep-alive connection, or with --new-connection-per-poll a new connection per
predict as `truss predict` or curl open one) until the answer carries that save's marker. The clock
starts just before the write and stops at that answer, so it holds the watcher's detection
(watchfiles step 15 ms), the patch upload, the control plane's staging and sync, the replica's
apply + hot swap or restart, and the gateway hop: what a user who saves and then calls predict
sees. The CLI's own JSON line per sync (action, its `ms`) is read from stdout and reported too.

- hot swap: predict()'s body changes (the greeting gets the marker); load() untouched.
- restart: load() changes (the greeting it sets carries the marker), so the replica restarts
  the worker (a new generation forked from the warm zygote, overlap mode).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import queue
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cp_support import REPO_ROOT, start_controlplane, stop_controlplane  # noqa: E402

MODEL_PY = '''class Model:
    def __init__(self, **kwargs):
        self._greeting = None

    def load(self):
        self._greeting = "Hello{load_marker}"

    def predict(self, model_input):
        name = model_input.get("name", "world") if isinstance(model_input, dict) else "world"
        return {{"greeting": f"{{self._greeting}}, {{name}}!{predict_marker}"}}
'''
MODES = ("hot swap", "restart")
POLL_SECONDS = 0.002


def source(mode: str, marker: str, extra_methods: int = 0) -> str:
    if mode == "hot swap":
        text = MODEL_PY.format(load_marker="", predict_marker=f" {marker}")
    else:
        text = MODEL_PY.format(load_marker=f" {marker}", predict_marker="")
    # A model.py of a realistic size: the replica parses, checks and compiles the whole file.
    return text + "".join(EXTRA_METHOD.format(n=n) for n in range(extra_methods))


EXTRA_METHOD = '''
    def helper_{n}(self, values):
        total = sum(value * {n} for value in values if value is not None)
        return {{"n": {n}, "total": total, "label": f"helper {n}"}}
'''


class Predictor:
    """POSTs predict through the gateway on one keep-alive connection (reopened if closed)."""

    def __init__(self, url: str, key: str, model_id: str, fresh: bool = False):
        self.fresh = fresh
        parts = urlsplit(url)
        self.host, self.port = parts.hostname, parts.port
        self.path = f"/model-{model_id}/development/predict"
        self.headers = {"Authorization": f"Api-Key {key}", "Content-Type": "application/json"}
        self.conn: http.client.HTTPConnection | None = None

    def greeting(self) -> str | None:
        try:
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
            self.conn.request("POST", self.path, body=b'{"name": "bench"}', headers=self.headers)
            response = self.conn.getresponse()
            body = response.read()
            if self.fresh or response.getheader("connection", "").lower() == "close":
                self.conn.close()
                self.conn = None
            if response.status != 200:
                return None
            return json.loads(body)["greeting"]
        except (OSError, http.client.HTTPException):
            if self.conn is not None:
                self.conn.close()
            self.conn = None
            return None


def reader(stream, lines: queue.Queue) -> None:
    for line in stream:
        lines.put((time.perf_counter(), line.rstrip("\n")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, default=REPO_ROOT / "examples" / "hello")
    parser.add_argument("--saves", type=int, default=10, help="saves per mode")
    parser.add_argument("--new-connection-per-poll", action="store_true",
                        help="open a new connection to the gateway for every predict (default: one keep-alive connection)")
    parser.add_argument("--extra-methods", type=int, default=0,
                        help="add N four-line methods to model.py (150: a ~620-line file; default: examples/hello's size)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--runtimes", default="process",
                        help="comma-separated control-plane runtimes measured one after the other in this run "
                             "(process, docker; docker needs an engine and TRUSS_BASE_IMAGE)")
    args = parser.parse_args()
    results = {runtime: measure(args, runtime) for runtime in args.runtimes.split(",")}
    for runtime, result in results.items():
        report(runtime, result, args.saves)


def measure(args: argparse.Namespace, runtime: str) -> dict:
    print(f"== runtime {runtime}", file=sys.stderr, flush=True)
    work = Path(tempfile.mkdtemp(prefix="live-reload-"))
    model_dir = work / "model"
    shutil.copytree(args.model_dir, model_dir)
    home = work / "home"
    home.mkdir()
    cp_env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), HOME=str(work / "cp-home"),
                  XDG_CACHE_HOME=str(work / "cp-cache"), XDG_DATA_HOME=str(work / "cp-data"))
    user_env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), HOME=str(home),
                    XDG_CACHE_HOME=str(home / "cache"), XDG_DATA_HOME=str(home / "data"))
    truss = [sys.executable, "-m", "truss_cli"]
    cp, url, key = start_controlplane(work / "cp-data-dir", cp_env, runtime=runtime)
    watcher: subprocess.Popen | None = None
    times: dict = {mode: [] for mode in MODES}
    cli_ms: dict = {mode: [] for mode in MODES}
    actions: dict = {mode: [] for mode in MODES}
    printed: dict = {mode: [] for mode in MODES}  # when the CLI's line for the save reached us
    server_ms: dict = {mode: [] for mode in MODES}  # the control plane's `ms` (stage, total, the replica's parts)
    ok = False
    try:
        subprocess.run([*truss, "remote", "add", "bench", url, "--api-key", key, "--use"],
                       env=user_env, check=True, capture_output=True)
        (model_dir / "model" / "model.py").write_text(source("hot swap", "#0#", args.extra_methods))
        t0 = time.perf_counter()
        watcher = subprocess.Popen([*truss, "push", str(model_dir), "--watch", "--output", "json"],
                                   env=user_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        out_lines: queue.Queue = queue.Queue()
        err_lines: queue.Queue = queue.Queue()
        threading.Thread(target=reader, args=(watcher.stdout, out_lines), daemon=True).start()
        threading.Thread(target=reader, args=(watcher.stderr, err_lines), daemon=True).start()
        deadline = time.monotonic() + 300
        while True:
            if watcher.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("push --watch did not start watching; stderr so far:\n"
                                   + "\n".join(line for _, line in list(err_lines.queue)))
            try:
                _, line = err_lines.get(timeout=0.5)
            except queue.Empty:
                continue
            if line.startswith("Watching "):
                break
        started = time.perf_counter() - t0
        print(f"push --watch to watching: {started:.2f} s", file=sys.stderr, flush=True)

        with httpx.Client(base_url=url, headers={"Authorization": f"Api-Key {key}"}, timeout=30) as client:
            model_id = client.get("/v1/models/hello").json()["id"]
        predictor = Predictor(url, key, model_id, fresh=args.new_connection_per_poll)
        if not (predictor.greeting() or "").endswith("#0#"):
            raise RuntimeError(f"development deployment does not serve the pushed code: {predictor.greeting()!r}")

        n = 0
        for mode in MODES:
            for rep in range(args.saves):
                n += 1
                marker = f"#{n}#"  # delimited: #1# is not inside #10#
                text = source(mode, marker, args.extra_methods)
                while not out_lines.empty():
                    out_lines.get()
                begin = time.perf_counter()
                with open(model_dir / "model" / "model.py", "w") as f:
                    f.write(text)
                while True:
                    greeting = predictor.greeting() or ""
                    if marker in greeting:
                        break
                    if time.perf_counter() - begin > 60:
                        raise RuntimeError(f"{mode} save {marker}: no new answer after 60 s (last: {greeting!r})")
                    time.sleep(POLL_SECONDS)
                elapsed = time.perf_counter() - begin
                printed_at, line = out_lines.get(timeout=30)
                result = json.loads(line)
                printed[mode].append((printed_at - begin) * 1000)
                times[mode].append(elapsed)
                cli_ms[mode].append(result.get("ms"))
                actions[mode].append(result.get("action"))
                server_ms[mode].append(result.get("server_ms") or {})
                print(f"{mode:8s} save {rep + 1}/{args.saves}: {elapsed * 1000:7.1f} ms  "
                      f"(CLI: {result.get('action')} in {result.get('ms')} ms, line printed at {printed[mode][-1]:.1f} ms; "
                      f"server ms {result.get('server_ms')})", file=sys.stderr, flush=True)
                time.sleep(0.3)  # let the old generation drain before the next save
        ok = True
    finally:
        if watcher is not None and watcher.poll() is None:
            watcher.terminate()
            try:
                watcher.wait(timeout=10)
            except subprocess.TimeoutExpired:
                watcher.kill()
        stop_controlplane(cp, work / "cp-data-dir")
        if ok and not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"kept {work}", file=sys.stderr)

    return {"times": times, "cli_ms": cli_ms, "printed": printed, "actions": actions, "server_ms": server_ms,
            "started": started}


def report(runtime: str, result: dict, saves: int) -> None:
    times, cli_ms, printed, actions, server_ms = (result[k] for k in ("times", "cli_ms", "printed", "actions", "server_ms"))
    print(f"\nruntime {runtime}")
    print(f"{'save to served (ms)':22s}{'min':>8s}{'p50':>8s}{'max':>8s}{'CLI ms p50':>12s}{'CLI line p50':>14s}  actions")
    for mode in MODES:
        row = [t * 1000 for t in times[mode]]
        shown = [m for m in cli_ms[mode] if m is not None]
        print(f"{mode:22s}{min(row):8.1f}{statistics.median(row):8.1f}{max(row):8.1f}"
              f"{(statistics.median(shown) if shown else float('nan')):12.1f}{statistics.median(printed[mode]):14.1f}  "
              f"{', '.join(sorted(set(map(str, actions[mode]))))}")
    print(f"\n{'server ms p50':22s}" + "".join(f"{part:>9s}" for part in SERVER_PARTS))
    for mode in MODES:
        print(f"{mode:22s}" + "".join(f"{_median_of(server_ms[mode], part):9.1f}" for part in SERVER_PARTS))
    print(f"\n{saves} saves per mode; push --watch to watching: {result['started']:.2f} s")


# The control plane's answer: `stage` (body read + stage), `total` (its sync, replica included),
# and the replica's own `apply`, `load`, `switch` (its `total` is replaced by the control plane's).
SERVER_PARTS = ("stage", "total", "apply", "load", "switch")


def _median_of(answers: list, part: str) -> float:
    values = [answer[part] for answer in answers if isinstance(answer.get(part), (int, float))]
    return statistics.median(values) if values else float("nan")


if __name__ == "__main__":
    main()
