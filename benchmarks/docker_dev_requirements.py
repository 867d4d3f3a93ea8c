#!/usr/bin/env python3
"""Requirements and system_packages saves on the docker runtime: installed in the serving
container (docs/live-reload.md, "Task K") against the rebuild they replace.

    TRUSS_BASE_IMAGE=truss-ci-base:bookworm python benchmarks/docker_dev_requirements.py [--keep]

One control plane `--runtime docker` (cp_support.py), one user running `truss push --watch
--output json` on a small model whose predict reports `six.__version__` and `jq -n 1+1`.
Each step rewrites config.yaml and polls `POST /model-{id}/development/predict` (the gateway)
until the answer shows the step's effect; the clock runs from the write to that answer (what a
user who saves then calls predict sees), beside the CLI's own `action` and `ms`:

1. `+six==1.16.0` (the container's first install: a copy of the image venv, six downloaded),
2. `six==1.16.0 -> six==1.17.0` (uv present; a new environment, six downloaded),
3. back to `six==1.16.0` (that environment exists: reused, no install),
4. `system_packages: [jq]` (apt-get update + install in the container),
5. the container killed: time until a new one serves again, replaying jq + six at its start
   (the image has neither),
6. the rebuild this replaces: `six==1.15.0` together with a `resources.memory` change (a
   rebuild key), so the image is rebuilt with the requirement (the requirements layer and
   all after it) and the new container replaces the old one, as every requirements save
   did on docker before,
7. the container killed again: a start with nothing to replay (the image has it all), for
   comparison with 5.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cp_support import REPO_ROOT, start_controlplane, stop_controlplane  # noqa: E402

NAME = "bench-dev-reqs"
MODEL_PY = '''import shutil
import subprocess


class Model:
    def predict(self, model_input):
        try:
            import six
            version = six.__version__
        except ImportError:
            version = None
        jq = shutil.which("jq")
        computed = subprocess.run([jq, "-n", "1 + 1"], capture_output=True, text=True).stdout.strip() if jq else None
        return {"six": version, "jq": computed}
'''


def config(requirements: list[str], packages: list[str] = (), memory: str = "512Mi") -> str:
    return (f"model_name: {NAME}\npython_version: py311\nrequirements: {json.dumps(requirements)}\n"
            f"system_packages: {json.dumps(list(packages))}\nresources:\n  cpu: \"1\"\n  memory: {memory}\n")


STEPS = [
    ("+six==1.16.0 (first in the container)", config(["six==1.16.0"]), {"six": "1.16.0", "jq": None}),
    ("six 1.16.0 -> 1.17.0", config(["six==1.17.0"]), {"six": "1.17.0", "jq": None}),
    ("back to six==1.16.0 (reused)", config(["six==1.16.0"]), {"six": "1.16.0", "jq": None}),
    ("+jq (apt)", config(["six==1.16.0"], ["jq"]), {"six": "1.16.0", "jq": "2"}),
    ("kill", None, {"six": "1.16.0", "jq": "2"}),
    ("rebuild: six==1.15.0 + memory", config(["six==1.15.0"], ["jq"], memory="600Mi"), {"six": "1.15.0", "jq": "2"}),
    ("kill", None, {"six": "1.15.0", "jq": "2"}),
]


def reader(stream, lines: queue.Queue) -> None:
    for line in stream:
        lines.put(line.rstrip("\n"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="dev-reqs-"))
    model_dir = work / "model"
    (model_dir / "model").mkdir(parents=True)
    (model_dir / "model" / "__init__.py").write_text("")
    (model_dir / "model" / "model.py").write_text(MODEL_PY)
    (model_dir / "config.yaml").write_text(config([]))
    home = work / "home"
    home.mkdir()
    cp_env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), HOME=str(work / "cp-home"),
                  XDG_CACHE_HOME=str(work / "cp-cache"), XDG_DATA_HOME=str(work / "cp-data"))
    user_env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), HOME=str(home),
                    XDG_CACHE_HOME=str(home / "cache"), XDG_DATA_HOME=str(home / "data"))
    truss = [sys.executable, "-m", "truss_cli"]
    cp, url, key = start_controlplane(work / "cp-data-dir", cp_env, runtime="docker")
    watcher = None
    rows = []
    try:
        subprocess.run([*truss, "remote", "add", "bench", url, "--api-key", key, "--use"],
                       env=user_env, check=True, capture_output=True)
        watcher = subprocess.Popen([*truss, "push", str(model_dir), "--watch", "--output", "json"],
                                   env=user_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        out_lines: queue.Queue = queue.Queue()
        err_lines: queue.Queue = queue.Queue()
        threading.Thread(target=reader, args=(watcher.stdout, out_lines), daemon=True).start()
        threading.Thread(target=reader, args=(watcher.stderr, err_lines), daemon=True).start()
        deadline = time.monotonic() + 900
        while not any(line.startswith("Watching ") for line in list(err_lines.queue)):
            if watcher.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("push --watch did not start watching:\n" + "\n".join(err_lines.queue))
            time.sleep(0.2)
        client = httpx.Client(base_url=url, headers={"Authorization": f"Api-Key {key}"}, timeout=300)
        model_id = client.get(f"/v1/models/{NAME}").json()["id"]

        def served() -> dict | None:
            try:
                answer = client.post(f"/model-{model_id}/development/predict", json={})
            except httpx.HTTPError:
                return None
            return answer.json() if answer.status_code == 200 else None

        for label, text, expected in STEPS:
            while not out_lines.empty():
                out_lines.get()
            begin = time.perf_counter()
            if text is None:  # kill the container: the reconciler starts another at the patched tree
                label = "container killed -> served again (" + ("replays)" if "rebuild" not in rows[-1][0] else "nothing to replay)")
                docker_ids = subprocess.run(["docker", "ps", "-q", "--filter", f"label=truss.model-name={NAME}"],
                                            capture_output=True, text=True, check=True).stdout.split()
                subprocess.run(["docker", "kill", *docker_ids], check=True, capture_output=True)
                time.sleep(0.5)  # the old container's answers are not the new one's
            else:
                (model_dir / "config.yaml").write_text(text)
            while served() != expected:
                if time.perf_counter() - begin > 1200:
                    raise RuntimeError(f"{label}: not served after 1200 s; watch stderr:\n" + "\n".join(err_lines.queue))
                time.sleep(0.05)
            elapsed = time.perf_counter() - begin
            wait_line = time.monotonic() + (30 if text is not None else 0)
            while time.monotonic() < wait_line and not any(line.startswith("{") and '"rebuild"' not in line
                                                           for line in list(out_lines.queue)):
                time.sleep(0.05)
            lines = [json.loads(line) for line in list(out_lines.queue) if line.startswith("{")]
            actions = ", ".join(f"{line.get('action')} {line.get('ms')} ms" for line in lines)
            rows.append((label, elapsed, actions))
            print(f"{label:36s} {elapsed:8.2f} s   CLI: {actions}", file=sys.stderr, flush=True)
            time.sleep(1)

    finally:
        if watcher is not None and watcher.poll() is None:
            watcher.terminate()
            try:
                watcher.wait(timeout=10)
            except subprocess.TimeoutExpired:
                watcher.kill()
        try:
            httpx.delete(f"{url}/v1/models/{NAME}", headers={"Authorization": f"Api-Key {key}"}, timeout=120)
        except httpx.HTTPError:
            pass
        stop_controlplane(cp, work / "cp-data-dir")
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(f"\n{'save to served':44s}{'s':>8s}  CLI")
    for label, seconds, actions in rows:
        print(f"{label:44s}{seconds:8.2f}  {actions}")


if __name__ == "__main__":
    main()
