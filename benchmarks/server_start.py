#!/usr/bin/env python3
"""Time from starting the model server to its "ready" status, for one or more checkouts.

    python benchmarks/server_start.py [--model-dir examples/hello] [--rounds 10] [--root DIR ...]

Each round starts `python -m truss_cli.server MODEL_DIR --port 0` from every root (this
checkout by default; give `--root` several times to compare checkouts side by side, e.g. a
`git archive` of an older commit), alternating the order, and measures the wall time until
the server's status file says "ready" (the model is loaded and predict answers). A root
whose server reads a replica config (truss_cli/server/replica_config.py) gets one written
from config.yaml by this checkout, as `truss run` does; an older one reads config.yaml.
Reports the median and the spread per root.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL_DIR = REPO_ROOT / "examples" / "hello"


def replica_config_args(root: Path, model_dir: Path, work: Path) -> list[str]:
    if not (root / "truss_cli" / "server" / "replica_config.py").is_file():
        return []
    sys.path.insert(0, str(REPO_ROOT))
    from truss_cli.config import load_config
    from truss_cli.config_to_replica import replica_config_for

    path = work / f"replica-{abs(hash(str(root)))}.json"
    path.write_text(replica_config_for(load_config(model_dir).config, secret_values=True).to_json())
    return ["--replica-config", str(path)]


def time_to_ready(python: str, root: Path, model_dir: Path, extra: list[str], work: Path) -> float:
    status = work / "status.json"
    status.unlink(missing_ok=True)
    env = dict(os.environ, PYTHONPATH=str(root), TRUSS_STATUS_FILE=str(status))
    started = time.perf_counter()
    proc = subprocess.Popen(
        [python, "-m", "truss_cli.server", str(model_dir), *extra, "--host", "127.0.0.1", "--port", "0"],
        # cwd outside any checkout: `-m` puts the working directory first on sys.path.
        env=env, cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        while True:
            try:
                phase = json.loads(status.read_text()).get("phase")
            except (OSError, ValueError):
                phase = None
            if phase == "ready":
                return time.perf_counter() - started
            if phase == "failed" or proc.poll() is not None:
                raise RuntimeError(f"server from {root} did not become ready (phase {phase})")
            time.sleep(0.002)
    finally:
        proc.terminate()
        proc.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, default=DEFAULT_MODEL_DIR)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--root", type=Path, action="append", help="a checkout to time (default: this one)")
    parser.add_argument("--python", default=sys.executable)
    args = parser.parse_args()
    roots = [root.resolve() for root in (args.root or [REPO_ROOT])]
    model_dir = args.model_dir.resolve()
    work = Path(tempfile.mkdtemp(prefix="server-start-"))
    extras = {root: replica_config_args(root, model_dir, work) for root in roots}
    times: dict[Path, list[float]] = {root: [] for root in roots}
    for round_index in range(args.rounds):
        order = roots if round_index % 2 == 0 else list(reversed(roots))
        for root in order:
            times[root].append(time_to_ready(args.python, root, model_dir, extras[root], work))
    print(f"start to ready, {args.rounds} rounds, model {model_dir.name}, Python {sys.version.split()[0]}")
    for root in roots:
        samples = sorted(times[root])
        print(
            f"  {root}: median {statistics.median(samples) * 1000:.0f} ms "
            f"(min {samples[0] * 1000:.0f}, max {samples[-1] * 1000:.0f})"
        )


if __name__ == "__main__":
    main()
