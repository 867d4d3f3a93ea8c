#!/usr/bin/env python3
"""The control plane's staging of one patch, in process: `controlplane.patches.stage()` with a
real store (SQLite in a temporary data directory, blobs on disk), no HTTP.

    python benchmarks/live_reload_stage.py [--files 5] [--reps 50] [--data-dir DIR]

A development deployment is created at a tree of `--files` small files (examples/hello's five,
or more: the hot swap's save touches one), then each rep builds the envelope of a one-file edit
of model/model.py (as `truss push --watch` sends it: the file's blob inside) and times `stage`:
reading the envelope, checking the patch against the base tree, keeping the blob and the new
tree, and the stage compare-and-set. What it excludes (the HTTP body, the route's lookups, the
sync) is in benchmarks/live_reload.py's figures. Run it on the disk the control plane uses
(`--data-dir`): the fsyncs are a good part of the cost, and they depend on the disk and on what
else writes to it.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from truss_cli.controlplane.patches import stage  # noqa: E402
from truss_cli.controlplane.store import Store  # noqa: E402
from truss_cli.controlplane.trees import Trees  # noqa: E402
from truss_cli.sync.envelope import envelope_bytes  # noqa: E402
from truss_cli.sync.manifest import Entry, Manifest  # noqa: E402
from truss_cli.sync.patch import Delta, Patch  # noqa: E402


def _entry(data: bytes) -> Entry:
    return Entry(hashlib.sha256(data).hexdigest(), 0o100644)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=5)
    parser.add_argument("--reps", type=int, default=50)
    parser.add_argument("--data-dir", type=Path, default=None, help="a directory on the disk to measure (default: a temporary one)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="stage-bench-", dir=args.data_dir))
    try:
        store = Store.open(work / "data", None)
        trees = Trees(store)
        contents = {f"model/file_{n}.py": f"# file {n}\n".encode() for n in range(args.files - 1)}
        contents["model/model.py"] = b"class Model:\n    def predict(self, x):\n        return 0\n"
        for data in contents.values():
            store.blobs.write([data], _entry(data).sha256)
        base = Manifest({path: _entry(data) for path, data in contents.items()})
        trees.keep(base)
        model, _ = store.models.get_or_create("bench")
        deployment = store.deployments.create(model.id, config={}, archive_sha256=base.tree_hash(),
                                              is_development=True, status="ACTIVE")
        times = []
        for rep in range(args.reps):
            source = f"class Model:\n    def predict(self, x):\n        return {rep + 1}\n".encode()
            delta = Delta({"model/model.py": _entry(source)})
            patch = Patch.between(base, delta)
            envelope = work / "envelope.tar"
            envelope.write_bytes(envelope_bytes(patch.to_dict(), {_entry(source).sha256: source}))
            started = time.perf_counter()
            deployment, _ = stage(store, trees, deployment, envelope)
            times.append((time.perf_counter() - started) * 1000)
            base = base.with_changes(delta)
        times.sort()
        print(f"stage(), {args.files} files, one-file patch, {args.reps} reps: "
              f"min {times[0]:.2f}  p50 {statistics.median(times):.2f}  p90 {times[int(len(times) * 0.9)]:.2f}  "
              f"max {times[-1]:.2f} ms")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
