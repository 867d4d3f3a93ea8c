"""`python -m truss_cli.server.control --control-token-file PATH` (what a container uses: its
environment is shown by `docker inspect`): the token in the file opens the control API, no
other does; an unreadable or empty file stops the replica naming the file."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from conftest import REPO_ROOT, write_model_dir
from test_server_harness import write_replica_config
from truss_cli.server.protocol import CONTROL_TOKEN_ENV, STATUS_FILE_ENV
from truss_cli.server.status import read_status

MODEL = """
class Model:
    def predict(self, request):
        return {"ok": True}
"""


def command(root: Path, token_file: Path) -> list[str]:
    replica_config = write_replica_config(root, root.parent / "replica.json")
    return [sys.executable, "-m", "truss_cli.server.control", str(root), "--replica-config", str(replica_config),
            "--port", "0", "--control-port", "0", "--control-token-file", str(token_file)]


def environment(status_file: Path) -> dict[str, str]:
    inherited = {key: value for key, value in os.environ.items() if key != CONTROL_TOKEN_ENV}
    return {**inherited, "PYTHONPATH": str(REPO_ROOT), STATUS_FILE_ENV: str(status_file)}


def test_the_token_in_the_file_opens_the_control_api(tmp_path: Path) -> None:
    root = write_model_dir(tmp_path / "model_dir", MODEL, "model_name: dev\n")
    token_file = tmp_path / "token"
    token_file.write_text("from-a-file\n")  # a trailing newline is not part of the token
    status_file = tmp_path / "status.json"
    log = open(tmp_path / "replica.log", "wb")
    process = subprocess.Popen(command(root, token_file), env=environment(status_file), stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while (status := read_status(status_file)) is None or status.phase != "ready":
            assert process.poll() is None, (tmp_path / "replica.log").read_text()
            assert time.monotonic() < deadline, (tmp_path / "replica.log").read_text()
            time.sleep(0.05)
        state = f"http://127.0.0.1:{status.control_port}/control/state"
        assert httpx.get(state, headers={"Authorization": "Bearer from-a-file"}, trust_env=False).status_code == 200
        assert httpx.get(state, headers={"Authorization": "Bearer other"}, trust_env=False).status_code == 401
    finally:
        process.terminate()
        process.wait(timeout=60)
        log.close()
    assert b"from-a-file" not in (tmp_path / "replica.log").read_bytes()


def test_a_missing_or_empty_token_file_stops_the_replica_naming_it(tmp_path: Path) -> None:
    root = write_model_dir(tmp_path / "model_dir", MODEL, "model_name: dev\n")
    missing = tmp_path / "no-such-token"
    out = subprocess.run(command(root, missing), env=environment(tmp_path / "s.json"), capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert f"--control-token-file {missing}: cannot read it" in out.stderr
    empty = tmp_path / "empty-token"
    empty.write_text("\n")
    out = subprocess.run(command(root, empty), env=environment(tmp_path / "s.json"), capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert f"--control-token-file {empty}: the file is empty" in out.stderr
