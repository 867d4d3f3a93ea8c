"""The development replica (`python -m truss_cli.server.control`) as a real process: patches
sent as envelopes to its control port, predictions over real sockets."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import httpx
import pytest

from conftest import EXAMPLES, REPO_ROOT
from dev_replica_support import TOKEN, DevReplica
from truss_cli.server.control.apply import scan_tree
from truss_cli.server.protocol import CONTROL_TOKEN_ENV, PREDICT_PATH, STATUS_PATH

VERSIONED = """
import os


class Model:
    def __init__(self, **kwargs):
        self.loaded_by = None

    def load(self):
        # What a real load() builds once (weights): a hot swap must keep it.
        self.loaded_by = os.getpid()

    def predict(self, model_input):
        return {"version": 1, "loaded_by": self.loaded_by}
"""


def model_dir(tmp_path: Path, source: str = VERSIONED, files: dict | None = None) -> Path:
    root = tmp_path / "model_dir"
    (root / "model").mkdir(parents=True)
    (root / "config.yaml").write_text("model_name: dev\n")
    (root / "model" / "__init__.py").write_text("")
    (root / "model" / "model.py").write_text(textwrap.dedent(source))
    for relative, text in (files or {}).items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(text)
    return root


def model_source(root: Path) -> str:
    return (root / "model" / "model.py").read_text()


def test_a_code_change_that_needs_a_restart_is_served_by_the_next_generation(tmp_path: Path) -> None:
    root = model_dir(tmp_path)
    with DevReplica(root) as replica:
        first = replica.predict().json()
        before = replica.state()
        changed = model_source(root).replace("self.loaded_by = os.getpid()", "self.loaded_by = -os.getpid()")
        changed = changed.replace('"version": 1', '"version": 2')
        answer = replica.patch({"model/model.py": changed})
        assert answer.status_code == 200, answer.text
        verdict = answer.json()
        assert verdict["action"] == "restart"
        assert verdict["reason"] == "model/model.py: load() changed"
        assert verdict["generation"] == before["generation"] + 1
        served = replica.predict().json()
        assert served["version"] == 2 and served["loaded_by"] < 0
        assert served["loaded_by"] != -first["loaded_by"]  # a new worker process loaded it
        # The tree hash moved to the new tree, in the control state, the status file and the worker's status route.
        assert verdict["tree_hash"] == scan_tree(root).tree_hash() != before["tree_hash"]
        assert replica.state()["tree_hash"] == verdict["tree_hash"]
        assert replica.status().tree_hash == verdict["tree_hash"]
        route = httpx.get(replica.url + STATUS_PATH).json()
        assert (route["tree_hash"], route["generation"]) == (verdict["tree_hash"], verdict["generation"])


def test_a_hot_swap_keeps_what_load_built_and_serves_the_new_code(tmp_path: Path) -> None:
    root = model_dir(tmp_path)
    with DevReplica(root) as replica:
        first = replica.predict().json()
        generation = replica.state()["generation"]
        answer = replica.patch({"model/model.py": model_source(root).replace('"version": 1', '"version": 2')})
        assert answer.status_code == 200, answer.text
        assert answer.json()["action"] == "hot_swap"
        served = replica.predict().json()
        assert served == {"version": 2, "loaded_by": first["loaded_by"]}
        assert replica.state()["generation"] == generation  # the same worker, no new load
        assert replica.state()["tree_hash"] == scan_tree(root).tree_hash()


def test_a_syntax_error_is_refused_with_its_traceback_and_a_fixed_file_recovers(tmp_path: Path) -> None:
    root = model_dir(tmp_path)
    old_source = model_source(root)
    with DevReplica(root) as replica:
        before = replica.state()
        broken = old_source.replace('"version": 1', '"version": 2').replace("def predict(self, model_input):", "def predict(self, model_input:")
        answer = replica.patch({"model/model.py": broken})
        assert answer.status_code == 422, answer.text
        detail = answer.json()["detail"]
        assert answer.json()["error_code"] == "PATCH_FAILED"
        assert detail["phase"] == "syntax"
        assert "model/model.py" in detail["traceback"] and "SyntaxError" in detail["traceback"]
        assert replica.predict().json()["version"] == 1
        assert replica.state()["tree_hash"] == before["tree_hash"]
        assert model_source(root) == old_source  # nothing was written
        fixed = replica.patch({"model/model.py": old_source.replace('"version": 1', '"version": 3')}, from_hash=before["tree_hash"])
        assert fixed.status_code == 200, fixed.text
        assert replica.predict().json()["version"] == 3


def test_load_raising_on_new_code_is_refused_the_old_code_serves_and_the_files_roll_back(tmp_path: Path) -> None:
    root = model_dir(tmp_path)
    old_source = model_source(root)
    with DevReplica(root) as replica:
        before = replica.state()
        failing = old_source.replace("self.loaded_by = os.getpid()", "raise RuntimeError('weights missing')")
        answer = replica.patch({"model/model.py": failing, "model/extra.py": "VALUE = 1\n"})
        assert answer.status_code == 422, answer.text
        detail = answer.json()["detail"]
        assert detail["phase"] == "load"
        assert "RuntimeError: weights missing" in detail["summary"]
        assert "raise RuntimeError('weights missing')" in detail["traceback"]
        assert replica.predict().json()["version"] == 1
        assert replica.state()["tree_hash"] == before["tree_hash"] == scan_tree(root).tree_hash()
        assert model_source(root) == old_source and not (root / "model" / "extra.py").exists()


def test_an_import_error_during_a_hot_swap_keeps_the_old_modules(tmp_path: Path) -> None:
    root = model_dir(tmp_path)
    old_source = model_source(root)
    with DevReplica(root) as replica:
        before = replica.state()
        bad_import = "from os import no_such_name\n" + old_source.replace('"version": 1', '"version": 2')
        answer = replica.patch({"model/model.py": bad_import})
        assert answer.status_code == 422, answer.text
        assert answer.json()["detail"]["phase"] == "import"
        assert "no_such_name" in answer.json()["detail"]["summary"]
        assert replica.predict().json()["version"] == 1
        assert replica.state()["tree_hash"] == before["tree_hash"]
        assert model_source(root) == old_source
        # The restored modules still swap: the next good patch is served.
        good = replica.patch({"model/model.py": old_source.replace('"version": 1', '"version": 4')})
        assert good.status_code == 200 and good.json()["action"] == "hot_swap", good.text
        assert replica.predict().json()["version"] == 4


def test_a_patch_from_a_stale_base_is_refused_naming_the_current_hash(tmp_path: Path) -> None:
    root = model_dir(tmp_path)
    with DevReplica(root) as replica:
        current = replica.state()["tree_hash"]
        answer = replica.patch({"model/model.py": "x = 1\n"}, from_hash="f" * 64)
        assert answer.status_code == 409
        assert answer.json() == {"error_code": "STALE_PATCH_BASE", "detail": {"tree_hash": current}}
        assert replica.predict().json()["version"] == 1


def test_the_control_api_wants_the_token(tmp_path: Path) -> None:
    root = model_dir(tmp_path)
    with DevReplica(root) as replica:
        assert httpx.get(replica.control_url + "/control/state").status_code == 401
        wrong = httpx.post(replica.control_url + "/control/restart", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        assert "Authorization: Bearer" in wrong.json()["detail"]
        assert replica.state()["generation"] == 1  # the refused restart did nothing


def test_without_a_token_the_replica_does_not_start_and_says_how_to_give_one(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if key != CONTROL_TOKEN_ENV}
    out = subprocess.run(
        [sys.executable, "-m", "truss_cli.server.control", str(model_dir(tmp_path)), "--replica-config", "r.json"],
        env={**env, "PYTHONPATH": str(REPO_ROOT)}, capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 2
    assert f"no control token: set {CONTROL_TOKEN_ENV}" in out.stderr


def test_a_path_outside_the_tree_is_refused_with_nothing_written(tmp_path: Path) -> None:
    root = model_dir(tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "linked").symlink_to(outside, target_is_directory=True)
    with DevReplica(root) as replica:
        before = replica.state()
        for path in ("../escape.py", "/tmp/escape.py", "model/../../escape.py", "linked/escape.py"):
            answer = replica.patch({path: "print('escaped')\n"})
            assert answer.status_code == 400, (path, answer.text)
            assert answer.json()["error_code"] in ("BAD_PATCH", "TREE_HASH_MISMATCH"), answer.text
        assert not (tmp_path / "escape.py").exists() and list(outside.iterdir()) == []
        assert replica.state()["tree_hash"] == before["tree_hash"]


@pytest.mark.parametrize("hot_reload,action", [("off", "restart"), ("auto", "hot_swap")])
def test_a_keep_alive_client_sees_no_failure_through_twenty_switches(tmp_path: Path, hot_reload: str, action: str) -> None:
    root = model_dir(tmp_path)
    source = model_source(root)
    with DevReplica(root) as replica:
        failures: list = []
        versions: list = []
        stop = threading.Event()

        def predict_in_a_loop() -> None:
            with httpx.Client(base_url=replica.url, timeout=30) as client:  # one keep-alive pool
                while not stop.is_set():
                    try:
                        response = client.post(PREDICT_PATH, json={})
                        if response.status_code != 200:
                            failures.append(f"HTTP {response.status_code}: {response.text}")
                        else:
                            versions.append(response.json()["version"])
                    except httpx.HTTPError as exc:
                        failures.append(repr(exc))

        client = threading.Thread(target=predict_in_a_loop)
        client.start()
        try:
            for version in range(2, 22):
                answer = replica.patch({"model/model.py": source.replace('"version": 1', f'"version": {version}')}, hot_reload=hot_reload)
                assert answer.status_code == 200, answer.text
                assert answer.json()["action"] == action
            final_count = len(versions)
            while len(versions) < final_count + 3 and client.is_alive():
                pass
        finally:
            stop.set()
            client.join(timeout=60)
        assert failures == []
        assert replica.state()["generation"] == (21 if action == "restart" else 1)
        assert versions[-1] == 21 and len(set(versions)) > 2


def test_a_first_load_that_fails_is_served_as_a_failure_until_a_fix_arrives(tmp_path: Path) -> None:
    root = model_dir(tmp_path, VERSIONED.replace("self.loaded_by = os.getpid()", "raise ValueError('not yet')"))
    with DevReplica(root) as replica:
        assert replica.status().phase == "failed"
        answer = replica.predict()
        assert answer.status_code == 503 and "not yet" in answer.text
        fixed = replica.patch({"model/model.py": textwrap.dedent(VERSIONED)})
        assert fixed.status_code == 200, fixed.text
        assert fixed.json()["action"] == "restart"
        assert replica.predict().json()["version"] == 1
        assert replica.status().phase == "ready"


def test_the_hello_example_patched_in_data_and_config_restarts(tmp_path: Path) -> None:
    root = tmp_path / "hello"
    shutil.copytree(EXAMPLES / "hello", root)
    with DevReplica(root) as replica:
        assert replica.predict({"name": "Ada"}).json() == {"greeting": "Hello, Ada!"}
        answer = replica.patch({"data/note.txt": "a data file\n"})
        assert answer.status_code == 200 and answer.json()["action"] == "restart"
        assert answer.json()["reason"] == "data/note.txt is not a Python module of the model code or packages"
        assert (root / "data" / "note.txt").read_text() == "a data file\n"
        removed = replica.patch({}, deletes=("data/note.txt",))
        assert removed.status_code == 200, removed.text
        assert not (root / "data").exists()  # the emptied directory went with its file
        assert replica.predict({"name": "Ada"}).json() == {"greeting": "Hello, Ada!"}


def test_a_new_environment_reaches_the_next_generation(tmp_path: Path) -> None:
    root = model_dir(tmp_path, VERSIONED.replace('{"version": 1, "loaded_by": self.loaded_by}', '{"version": 1, "env": os.environ.get("GREETING")}'))
    with DevReplica(root) as replica:
        assert replica.predict().json()["env"] is None
        answer = replica.patch({}, environment={"GREETING": "hi"})
        assert answer.status_code == 200 and answer.json()["action"] == "restart", answer.text
        assert answer.json()["reason"] == "the environment changed"
        assert replica.predict().json()["env"] == "hi"
        # The control token is the supervisor's, never the model's.
        assert TOKEN not in httpx.get(replica.url + STATUS_PATH).text


def test_a_worker_that_dies_is_replaced_by_a_new_generation_of_the_same_tree(tmp_path: Path) -> None:
    root = model_dir(tmp_path)
    with DevReplica(root) as replica:
        tree_hash = replica.state()["tree_hash"]
        worker_pid = httpx.get(replica.url + STATUS_PATH).json()["pid"]
        assert worker_pid != replica.process.pid  # the predict path is the worker's own
        os.kill(worker_pid, signal.SIGKILL)
        replica.wait_status(lambda s: s.generation == 2 and s.phase == "ready", "generation 2")
        assert replica.predict().json()["version"] == 1
        assert replica.state()["tree_hash"] == tree_hash


def test_the_zygote_refuses_to_fork_once_a_thread_runs(tmp_path: Path) -> None:
    # A fork copies only the forking thread: a lock another thread held stays held forever
    # in the worker. The zygote checks before every fork instead of hoping.
    script = (
        "import sys, threading, time\n"
        "threading.Thread(target=time.sleep, args=(30,), daemon=True).start()\n"
        "from truss_cli.server.control import zygote\n"
        "sys.exit(zygote.main())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], input='{"generation": 1}\n', env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 3
    assert "the zygote has 2 threads; it forks only when single-threaded" in out.stderr


def test_a_taken_port_fails_naming_it_in_the_log_and_the_status(tmp_path: Path) -> None:
    import socket

    from test_server_harness import write_replica_config
    from truss_cli.server.status import read_status

    root = model_dir(tmp_path)
    taken = socket.create_server(("127.0.0.1", 0))
    port = taken.getsockname()[1]
    status_file = tmp_path / "status.json"
    try:
        out = subprocess.run(
            [sys.executable, "-m", "truss_cli.server.control", str(root), "--port", str(port),
             "--replica-config", str(write_replica_config(root, tmp_path / "replica.json")), "--status-file", str(status_file)],
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT), CONTROL_TOKEN_ENV: TOKEN}, capture_output=True, text=True, timeout=60,
        )
    finally:
        taken.close()
    assert out.returncode == 1
    assert f"error: cannot listen on 127.0.0.1:{port}: Address already in use" in out.stderr
    status = read_status(status_file)
    assert status is not None and status.phase == "failed" and "Address already in use" in status.summary


def test_a_new_interpreter_is_served_by_a_generation_forked_from_a_new_zygote(tmp_path: Path) -> None:
    # A second interpreter with the same packages (what the control plane's environment
    # builder hands over when requirements change).
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(tmp_path / "venv")], check=True)
    other = str(tmp_path / "venv" / "bin" / "python")
    root = model_dir(tmp_path, VERSIONED.replace('{"version": 1, "loaded_by": self.loaded_by}', '{"version": 1, "python": __import__("sys").executable}'))
    with DevReplica(root) as replica:
        assert replica.predict().json()["python"] == sys.executable
        missing = replica.patch({}, python=str(tmp_path / "nope" / "python"))
        assert missing.status_code == 400 and "is not an executable file on the replica" in missing.text
        answer = replica.patch({}, python=other)
        assert answer.status_code == 200, answer.text
        assert (answer.json()["action"], answer.json()["reason"]) == ("restart", "the interpreter changed")
        assert replica.predict().json()["python"] == other
        # Later restarts keep forking from the new interpreter's zygote.
        assert replica.control.post("/control/restart").status_code == 200
        assert replica.predict().json()["python"] == other


USES_A_PACKAGE = """
from helper import greeting

LIMIT = 3


class Model:
    def load(self):
        self.loads = getattr(self, "loads", 0) + 1

    def predict(self, model_input):
        return {"greeting": greeting(), "limit": LIMIT}
"""


def test_a_package_module_is_hot_swapped_and_a_top_level_change_restarts(tmp_path: Path) -> None:
    root = model_dir(tmp_path, USES_A_PACKAGE, files={"packages/helper.py": "def greeting():\n    return 'hi'\n"})
    with DevReplica(root) as replica:
        assert replica.predict().json() == {"greeting": "hi", "limit": 3}
        swapped = replica.patch({"packages/helper.py": "def greeting():\n    return 'hello'\n"})
        assert swapped.status_code == 200 and swapped.json()["action"] == "hot_swap", swapped.text
        assert replica.predict().json() == {"greeting": "hello", "limit": 3}
        restarted = replica.patch({"model/model.py": textwrap.dedent(USES_A_PACKAGE).replace("LIMIT = 3", "LIMIT = 4")})
        assert restarted.status_code == 200, restarted.text
        assert restarted.json()["action"] == "restart"
        assert restarted.json()["reason"] == "model/model.py: a top-level statement changed (it runs at import)"
        assert replica.predict().json() == {"greeting": "hello", "limit": 4}


SLOW = """
import time


class Model:
    def predict(self, model_input):
        time.sleep(model_input.get("sleep", 0))
        return {"version": 1}
"""


def test_a_request_in_flight_during_a_restart_is_answered_by_the_old_code(tmp_path: Path) -> None:
    root = model_dir(tmp_path, SLOW)
    with DevReplica(root) as replica:
        slow: list = []

        def predict_slowly() -> None:
            try:
                slow.append(replica.predict({"sleep": 1.5}))
            except httpx.HTTPError as exc:
                slow.append(exc)

        in_flight = threading.Thread(target=predict_slowly)
        in_flight.start()
        while httpx.get(replica.url + "/metrics").text.count('in_flight{route="predict"} 1') == 0 and in_flight.is_alive():
            pass
        answer = replica.patch({"model/model.py": textwrap.dedent(SLOW).replace('"version": 1', '"version": 2')}, hot_reload="off")
        assert answer.status_code == 200 and answer.json()["action"] == "restart", answer.text
        assert replica.predict().json() == {"version": 2}  # served while the old one drains
        in_flight.join(timeout=30)
        assert isinstance(slow[0], httpx.Response), slow[0]
        assert slow[0].status_code == 200 and slow[0].json() == {"version": 1}


def test_sigterm_stops_the_replica_its_workers_and_its_zygote(tmp_path: Path) -> None:
    root = model_dir(tmp_path)
    replica = DevReplica(root)
    worker_pid = httpx.get(replica.url + STATUS_PATH).json()["pid"]
    children = Path(f"/proc/{replica.process.pid}/task/{replica.process.pid}/children").read_text().split()
    assert replica.stop() == 0
    for pid in [worker_pid, *map(int, children)]:
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2], pid
    assert "Traceback" not in replica.log()


def test_the_temporary_file_of_an_unfinished_patch_is_removed_at_start(tmp_path: Path) -> None:
    root = model_dir(tmp_path)
    clean_hash = scan_tree(root).tree_hash()
    leftover = root / "model" / ".model.py.k3j2h1.truss-new"
    leftover.write_text("half of a file")
    with DevReplica(root) as replica:
        assert not leftover.exists()
        assert replica.state()["tree_hash"] == clean_hash
        assert "Removed model/.model.py.k3j2h1.truss-new, left by a patch this replica did not finish" in replica.log()
