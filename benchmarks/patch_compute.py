#!/usr/bin/env python3
"""Time to compute the patch for one changed file in a 5,000-file model directory.

    python benchmarks/patch_compute.py [--files 5000] [--reps 21] [--truss-python PATH] [--no-events]

The tree is the one Truss's anchor harness uses (../shared/bench-truss, `truss_patch_calc`):
a valid truss (config.yaml, model/model.py) plus N small files in model/assets/d000.. (100
per directory). Each rep rewrites model/model.py and times, on the same tree:

- ours, from events: `IncrementalTree.update([model.py])` (lstat, ignore rules, hash the one
  file, splice the manifest), the next tree hash, and `Patch(...).to_json()`: everything the
  client computes per save before sending;
- the tree hash alone, from scratch vs spliced into cached lines (`Manifest.with_changes`);
- ours, full rehash: `list_files` + hashing every file with a fresh hasher + the tree hash:
  what a client without events would do per save (the shape of Truss's approach);
- ours, self-healing rescan: `IncrementalTree.full_rescan()` (a full walk, but the identity
  cache re-reads only changed files);
- with real events (unless --no-events): the watch loop (`watch_tree`) running; reports the
  time from the write to the batch reaching the caller (detection: mostly watchfiles' 15 ms
  step) and the batch's compute time;
- Truss (if a Truss venv is found, see ../shared/bench-truss/README.md): `calc_truss_patch`
  alone, and `TrussHandle(dir).calc_patch(prev_hash)`, what `truss watch` runs per change.

The asset files are written with an mtime in the past (a checked-out repository), so the
identity cache holds; model.py is always freshly written. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from truss_cli.client.watch import STEP_MS, watch_tree  # noqa: E402
from truss_cli.incremental_tree import IncrementalTree  # noqa: E402
from truss_cli.sync.manifest import Entry, Manifest  # noqa: E402
from truss_cli.sync.patch import Patch  # noqa: E402
from truss_cli.tree import TreeHasher, list_files  # noqa: E402

TRUSS_PYTHONS = ("/tmp/anchor-truss-venv/bin/python", "/tmp/anchor-truss-venv-lrclient/bin/python")
CONFIG = "model_name: identity\npython_version: py311\nlive_reload: true\nresources:\n  cpu: '1'\n  memory: 2Gi\n  use_gpu: false\n"
OLD = 1_600_000_000

# Runs in the Truss venv: the calls of anchors.py's bench_patch_calc, on our tree.
TRUSS_SCRIPT = r"""
import json, statistics, sys, time
from pathlib import Path
from truss.local.local_config_handler import LocalConfigHandler
from truss.truss_handle.patch.calc_patch import calc_truss_patch
from truss.truss_handle.patch.hash import directory_content_hash
from truss.truss_handle.patch.signature import calc_truss_signature
from truss.truss_handle.truss_handle import TrussHandle
from truss.util.path import load_trussignore_patterns_from_truss_dir

tdir, reps = Path(sys.argv[1]), int(sys.argv[2])
handle = TrussHandle(tdir)
truss_ignore = load_trussignore_patterns_from_truss_dir(tdir)
ignore = truss_ignore + handle.spec.hash_ignore_patterns
prev_sig = calc_truss_signature(tdir, ignore)
prev_hash = directory_content_hash(tdir, handle.spec.hash_ignore_patterns)
LocalConfigHandler.add_signature(prev_hash, json.dumps(prev_sig.to_dict()))
calc_only, handle_calc = [], []
for rep in range(1, reps + 1):
    (tdir / "model" / "model.py").write_text("class Model:\n    def predict(self, x):\n        return x\n" + "#" * (1000 + rep) + "\n")
    t0 = time.perf_counter()
    ops = calc_truss_patch(tdir, prev_sig, ignore)
    calc_only.append(time.perf_counter() - t0)
    assert ops is not None and len(ops) == 1, ops
    t0 = time.perf_counter()
    details = TrussHandle(tdir).calc_patch(prev_hash, truss_ignore)
    handle_calc.append(time.perf_counter() - t0)
    assert details is not None and len(details.patch_ops) == 1
print(json.dumps({"paths": len(prev_sig.content_hashes_by_path),
                  "calc_truss_patch_ms": [v * 1000 for v in calc_only],
                  "truss_handle_calc_patch_ms": [v * 1000 for v in handle_calc]}))
"""


def write_tree(root: Path, files: int) -> None:
    (root / "model").mkdir(parents=True)
    (root / "config.yaml").write_text(CONFIG)
    (root / "model" / "model.py").write_text("class Model:\n    def predict(self, x):\n        return x\n")
    for index in range(files):
        directory = root / "model" / "assets" / f"d{index // 100:03d}"
        if index % 100 == 0:
            directory.mkdir(parents=True)
        path = directory / f"f{index:05d}.txt"
        path.write_text(f"asset {index} " + "x" * (index % 50) + "\n")
        os.utime(path, (OLD, OLD))
    for path in [root / "config.yaml", *(root / "model").rglob("*")]:
        if path.is_dir() or path.name != "model.py":
            os.utime(path, (OLD, OLD))


def revise(root: Path, rep: int) -> Path:
    path = root / "model" / "model.py"
    path.write_text("class Model:\n    def predict(self, x):\n        return x\n" + "#" * rep + "\n")
    return path


def summary(samples_ms: list[float]) -> dict:
    ordered = sorted(samples_ms)
    return {
        "median_ms": round(statistics.median(ordered), 3),
        "min_ms": round(ordered[0], 3),
        "max_ms": round(ordered[-1], 3),
        "n": len(ordered),
    }


def bench_ours(root: Path, reps: int) -> dict:
    tree = IncrementalTree(root)
    tree.tree_hash()
    from_events, full_rehash, rescan = [], [], []
    for rep in range(1, reps + 1):
        path = revise(root, rep)
        prev_hash = tree.tree_hash()
        start = time.perf_counter()
        delta = tree.update([str(path)])
        document = Patch(prev_hash, tree.tree_hash(), delta).to_json()
        from_events.append((time.perf_counter() - start) * 1000)
        assert list(delta) == ["model/model.py"], delta
        assert len(document) < 1000

        start = time.perf_counter()
        full_hash = TreeHasher().manifest(list_files(root)).tree_hash()
        full_rehash.append((time.perf_counter() - start) * 1000)
        assert full_hash == tree.tree_hash()

        start = time.perf_counter()
        assert not tree.full_rescan()
        rescan.append((time.perf_counter() - start) * 1000)
    # The tree hash alone: from scratch (encode, sort, format 5,000 lines) and spliced
    # (`with_changes` on a manifest whose lines are cached), for one changed entry.
    fresh, spliced = [], []
    manifest = tree.manifest
    path = "model/model.py"
    for rep in range(reps):
        entry = Entry(hashlib.sha256(str(rep).encode()).hexdigest(), manifest[path].mode)
        start = time.perf_counter()
        Manifest(dict(manifest)).tree_hash()
        fresh.append((time.perf_counter() - start) * 1000)
        manifest.tree_hash()
        start = time.perf_counter()
        manifest = manifest.with_changes({path: entry})
        manifest.tree_hash()
        spliced.append((time.perf_counter() - start) * 1000)
    return {
        "paths": len(tree.manifest),
        "tree_hash_from_scratch": summary(fresh),
        "tree_hash_spliced": summary(spliced),
        "ours_from_events": summary(from_events),
        "ours_full_rehash": summary(full_rehash),
        "ours_full_rescan_cached": summary(rescan),
    }


def bench_events(root: Path, reps: int, step_ms: int) -> dict:
    tree = IncrementalTree(root)
    stop = threading.Event()
    batches: list = []
    arrived = threading.Condition()

    def run() -> None:
        for batch in watch_tree(tree, stop_event=stop, yield_idle=True, step_ms=step_ms):
            with arrived:
                batches.append(batch)
                arrived.notify_all()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    with arrived:
        arrived.wait_for(lambda: batches, timeout=30)  # the first idle batch: watching
    detect, compute = [], []
    for rep in range(1, reps + 1):
        time.sleep(0.1)
        with arrived:
            seen = len(batches)
        written = time.monotonic()
        revise(root, 1000 + rep)
        with arrived:
            ok = arrived.wait_for(lambda: any(b.delta for b in batches[seen:]), timeout=30)
            assert ok, "no batch arrived"
            batch = next(b for b in batches[seen:] if b.delta)
        detect.append((batch.received - written) * 1000)
        compute.append(batch.compute_ms)
    stop.set()
    thread.join(timeout=30)
    return {"events_write_to_batch": summary(detect), "events_batch_compute": summary(compute)}


def bench_truss(python: str, root: Path, reps: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="truss-home-") as home:
        result = subprocess.run(
            [python, "-c", TRUSS_SCRIPT, str(root), str(reps)],
            env={**os.environ, "HOME": home, "PYTHONPATH": ""},
            capture_output=True, text=True, check=False,
        )
    if result.returncode != 0:
        return {"error": result.stderr.strip().splitlines()[-1:]}
    data = json.loads(result.stdout.strip().splitlines()[-1])
    return {
        "truss_paths": data["paths"],
        "truss_calc_truss_patch": summary(data["calc_truss_patch_ms"]),
        "truss_handle_calc_patch": summary(data["truss_handle_calc_patch_ms"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=5000)
    parser.add_argument("--reps", type=int, default=21)
    parser.add_argument("--truss-python", help="python of a venv with truss (default: the anchor venv, if built)")
    parser.add_argument("--no-events", action="store_true", help="skip the real-event (watchfiles) measurement")
    parser.add_argument("--step-ms", type=int, default=STEP_MS, help="watchfiles' step for the real-event run")
    parser.add_argument("--events-only", action="store_true", help="only the real-event measurement")
    args = parser.parse_args()
    truss_python = args.truss_python or next((path for path in TRUSS_PYTHONS if os.path.exists(path)), None)
    with tempfile.TemporaryDirectory(prefix="patch-compute-") as work:
        root = Path(work) / "truss"
        write_tree(root, args.files)
        result: dict = {"files": args.files, "reps": args.reps, "python": sys.version.split()[0]}
        if not args.events_only:
            result.update(bench_ours(root, args.reps))
        if not args.no_events:
            result["step_ms"] = args.step_ms
            result.update(bench_events(root, args.reps, args.step_ms))
        if truss_python and not args.events_only:
            result["truss_python"] = truss_python
            result.update(bench_truss(truss_python, root, min(args.reps, 5)))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
