"""Server time of every dashboard page with 50 models (issue 12: "every page under 100 ms server
time with 50 models"), over a real control plane.

    python benchmarks/dashboard_pages.py [--models 50] [--rounds 100] [--code DIR]

The store: `--models` − 1 models as benchmarks/dashboard_models_page.py makes them (two
deployments each, a day of hourly usage rows; written before the control plane starts), and one
model really pushed from the CLI on the process runtime (`truss push`, copies of examples/hello):
deployment-1 in production, an environment `staging` (made through the API) into which
deployment-2 is pushed (`--environment staging`, an instant promotion), deployment-3 promoted into
production with rolling settings that wait an hour after the first step (a promotion in
progress, whose card the page polls every second), and the development deployment
`truss push --watch` makes, with its 50 syncs (dev_syncs' KEEP, the most a page shows) written
into the store beside the running plane (SQLite in WAL mode takes a second writer). Its four
replicas run while the pages are timed, the reconciler ticking as it does for a user.

Timed: every page a browser asks for, and the fragments the pages poll, each GET with a signed-in
session (the sign-in form, as a browser does) on one keep-alive connection, from the request sent
to the body read, over loopback. That is the server's time plus uvicorn's and httpx's share of
one HTTP exchange: the static file row (GET /static/dashboard.css, no session, no store read)
shows that floor. Every answer must be 200 and carry what the page is about (the benchmark fails
otherwise). Prints p50/p95/max in ms per page and how many answers took over 100 ms.

`--code DIR`: the truss_cli the control plane and the CLI run, e.g. a `git archive` of another
commit for a before/after (docs/performance.md, "Dashboard: every page").
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cp_support import REPO_ROOT, start_controlplane, stop_controlplane  # noqa: E402
from dashboard_models_page import populate as populate_models  # noqa: E402

from truss_cli.controlplane.store import Store  # noqa: E402
from truss_cli.controlplane.store.dev_syncs import KEEP, changes_between  # noqa: E402

MODEL = "bench-hello"
WARM_UP = 10  # first renders compile the templates; the first reads warm SQLite's page cache


def truss(env: dict, *args: str, timeout: float = 600) -> str:
    done = subprocess.run([sys.executable, "-m", "truss_cli", *args], env=env, capture_output=True, text=True,
                          timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"truss {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def checked(answer: httpx.Response) -> httpx.Response:
    if answer.is_error:
        raise RuntimeError(f"{answer.request.method} {answer.request.url.path}: {answer.status_code} {answer.text}")
    return answer


def push_the_model(env: dict, source: Path, client: httpx.Client) -> dict:
    """deployment-1 in production, deployment-2 promoted into staging, deployment-3 being rolled
    into production, and the development deployment (`push --watch`, stopped once it watches):
    the model's id and the development deployment's."""
    first = json.loads(truss(env, "push", str(source), "--model-name", MODEL, "--wait", "--output", "json"))
    model_id = first["model"]["id"]
    checked(client.post(f"/v1/models/{model_id}/environments", json={"name": "staging"}))
    (source / "model" / "model.py").write_text((source / "model" / "model.py").read_text() + "\n# deployment-2\n")
    truss(env, "push", str(source), "--model-name", MODEL, "--environment", "staging", "--wait", "--output", "json")
    # A rolling promotion into production that waits an hour after its first step: the card a
    # browser polls every second while a promotion runs is timed in that state.
    rolling = {"rolling_deploy": True, "rolling_deploy_config": {"max_surge_percent": 50,
                                                                 "stabilization_time_seconds": 3600}}
    checked(client.patch(f"/v1/models/{model_id}/environments/production", json={"promotion_settings": rolling}))
    third = json.loads(truss(env, "push", str(source), "--model-name", MODEL, "--wait", "--output", "json"))
    checked(client.post(f"/v1/models/{model_id}/deployments/{third['deployment']['id']}/promote"))
    watch = subprocess.Popen([sys.executable, "-m", "truss_cli", "push", str(source), "--model-name", MODEL, "--watch",
                              "--output", "json"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first_line = watch.stdout.readline()  # type: ignore[union-attr]
        if not first_line:
            raise RuntimeError(f"push --watch did not start watching:\n{watch.stderr.read()}")  # type: ignore[union-attr]
        watching = json.loads(first_line)
        assert watching["action"] == "watching", watching
    finally:
        watch.terminate()
        watch.wait(timeout=30)
    return {"model_id": model_id, "development_id": watching["deployment_id"]}


def record_syncs(data_dir: Path, deployment_id: str) -> None:
    """KEEP syncs of 40 files each on the development deployment, as dashboard_development_page.py."""
    new = {f"model/file_{i:03d}.py": (str(i), 0o644) for i in range(40)}
    with Store.open(data_dir) as store:
        for i in range(KEEP):
            store.dev_syncs.record(deployment_id, from_tree="a" * 64, to_tree=f"{i:064x}",
                                   changes=changes_between({}, new), action="hot_swap",
                                   reason="only function bodies of model code changed", ms=40.0 + i)


def sign_in(client: httpx.Client, key: str) -> None:
    form = client.get("/sign-in")
    token = re.search(r'name="sign_in_token" value="([^"]+)"', form.text).group(1)  # type: ignore[union-attr]
    answer = client.post("/sign-in", data={"api_key": key, "sign_in_token": token, "next": "/"})
    assert answer.status_code == 303, answer.text


def pages(model_id: str) -> list[tuple[str, str, str]]:
    """(label, path, text the answer must contain)."""
    base = f"/models/{model_id}"
    return [
        ("static file (HTTP floor)", "/static/dashboard.css", "{"),
        ("Models /", "/", "model-048"),
        ("Models / search q=model-0", "/?q=model-0", "model-048"),
        ("Overview /models/{id}", base, "curl"),
        ("Deployments", f"{base}/deployments", "deployment-2"),
        ("Environments", f"{base}/environments", "Promotion in progress"),
        ("environment card, rolling (polled 1/s)", f"{base}/environments/production/card", "Promotion in progress"),
        ("environment card, idle (polled 1/5 s)", f"{base}/environments/staging/card", "deployment-2"),
        ("Logs", f"{base}/logs", "deployment-1"),
        ("Metrics", f"{base}/metrics", "deployment-1"),
        ("Development", f"{base}/development", "only function bodies"),
        ("development live part (polled)", f"{base}/development/live", "only function bodies"),
    ]


def measure(client: httpx.Client, path: str, must_contain: str, rounds: int) -> list[float]:
    times = []
    for _ in range(WARM_UP + rounds):
        started = time.perf_counter()
        answer = client.get(path)
        body = answer.text
        times.append((time.perf_counter() - started) * 1000)
        if answer.status_code != 200 or must_contain not in body:
            raise RuntimeError(f"GET {path}: {answer.status_code}, without {must_contain!r}:\n{body[:2000]}")
    return sorted(times[WARM_UP:])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--model-dir", type=Path, default=REPO_ROOT / "examples" / "hello")
    parser.add_argument("--code", type=Path, default=REPO_ROOT,
                        help="the truss_cli the control plane and the CLI run (e.g. a `git archive` of another "
                             "commit, for a before/after); the store is always written by this checkout's")
    args = parser.parse_args()
    if args.models < 50:
        parser.error("--models: at least 50 (the pages check model-048 is listed)")
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        os.chdir(root)  # `python -m` puts the working directory first on the path: --code must win
        data_dir, home = root / "cp", root / "home"
        with Store.open(data_dir) as store:
            populate_models(store, args.models - 1)
        home.mkdir()
        env = {**os.environ, "HOME": str(home), "TRUSS_CACHE_DIR": str(home / "cache"),
               "PYTHONPATH": os.pathsep.join(filter(None, [str(args.code.resolve()), os.environ.get("PYTHONPATH")]))}
        started = time.perf_counter()
        process, url, key = start_controlplane(data_dir, env)
        try:
            truss(env, "remote", "add", "bench", url, "--api-key", key)
            source = root / MODEL
            shutil.copytree(args.model_dir, source)
            with httpx.Client(base_url=url, timeout=60.0, headers={"authorization": f"Bearer {key}"}) as api:
                ids = push_the_model(env, source, api)
            record_syncs(data_dir, ids["development_id"])
            print(f"store ready in {time.perf_counter() - started:.0f} s: {args.models} models, {MODEL} with "
                  f"production, staging and development deployments; load average {os.getloadavg()[0]:.1f}",
                  file=sys.stderr)
            with httpx.Client(base_url=url, timeout=60.0) as client:
                sign_in(client, key)
                print(f"| page | GET | p50 | p95 | max | over 100 ms |  ({args.rounds} rounds each)")
                print("|---|---|---|---|---|---|")
                for label, path, must_contain in pages(ids["model_id"]):
                    times = measure(client, path, must_contain, args.rounds)
                    shown = path.replace(ids["model_id"], "{id}")
                    print(f"| {label} | `{shown}` | {statistics.median(times):.1f} ms | "
                          f"{times[int(len(times) * 0.95) - 1]:.1f} ms | {times[-1]:.1f} ms | "
                          f"{sum(1 for t in times if t > 100)} |", flush=True)
            print(f"load average after: {os.getloadavg()[0]:.1f}", file=sys.stderr)
        finally:
            stop_controlplane(process, data_dir)


if __name__ == "__main__":
    main()
