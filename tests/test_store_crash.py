"""SIGKILL at any moment loses nothing committed and leaves no blob a later read would trust.

A real writer process loops (blob, model, deployment, build, secret, key), printing each
iteration's ids only after its transaction committed; it is killed mid-loop, and a fresh
Store must then hold every printed thing, intact.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO_ROOT
from store_support import backend, database_url  # noqa: F401 (fixtures)
from truss_cli.controlplane.store import Store

_WRITER = """
import json, os, sys, hashlib
from pathlib import Path
from truss_cli.controlplane.store import Store
store = Store.open(Path(sys.argv[1]), sys.argv[2] or None)
n = 0
while True:
    n += 1
    data = os.urandom(1 << 20)  # big enough that a kill often lands inside a blob write
    digest = hashlib.sha256(data).hexdigest()
    store.blobs.write([data[i:i + 65536] for i in range(0, len(data), 65536)], digest)
    model = store.models.create(f"model-{n}")
    deployment = store.deployments.create(model.id, config={"n": n}, archive_sha256=digest)
    build = store.builds.queue(deployment.id)
    store.secrets.set(f"secret_{n}", f"value-{n}")
    key = store.api_keys.create(scope="invoke", models=[model.name])
    print(json.dumps({"n": n, "model": model.id, "deployment": deployment.id, "digest": digest,
                      "build": build.id, "key": key.plaintext}), flush=True)
"""


@pytest.mark.parametrize("kill_after", [3, 12])
def test_sigkill_mid_write_loses_nothing_committed(tmp_path: Path, database_url: str | None, kill_after: int):
    data_dir = tmp_path / "data"
    Store.open(data_dir, database_url).close()
    writer = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(data_dir), database_url or ""],
        stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT, env={"PYTHONPATH": str(REPO_ROOT), "PATH": ""},
    )
    committed = [json.loads(writer.stdout.readline()) for _ in range(kill_after)]
    os.kill(writer.pid, signal.SIGKILL)
    # Whatever it printed before dying was committed too.
    committed += [json.loads(line) for line in writer.stdout.read().splitlines() if line.strip()]
    writer.wait()
    assert writer.returncode == -signal.SIGKILL

    with Store.open(data_dir, database_url) as store:
        for entry in committed:
            model = store.models.get(entry["model"])
            deployment = store.deployments.get(model.id, "production")
            assert deployment.id == entry["deployment"] and deployment.config == {"n": entry["n"]}
            assert deployment.archive_sha256 == entry["digest"]
            assert store.builds.get(entry["build"]).state == "queued"
            assert store.secrets.get(f"secret_{entry['n']}").reveal() == f"value-{entry['n']}"
            key = store.api_keys.authenticate(entry["key"])
            assert key is not None and key.may_invoke(model.name)
            with store.blobs.open(entry["digest"]) as f:
                assert hashlib.sha256(f.read()).hexdigest() == entry["digest"]
        # No file under a final name holds anything but the bytes its name promises; an
        # interrupted write can only have left a temporary file (which the sweep removes).
        final_files = sorted((store.blobs.root / "sha256").rglob("*"))
        for path in (p for p in final_files if p.is_file()):
            assert hashlib.sha256(path.read_bytes()).hexdigest() == path.name
        assert {e["digest"] for e in committed} <= set(store.blobs.digests())
        # The store still takes writes after the crash.
        store.models.create("after-the-crash")
