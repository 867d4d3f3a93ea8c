"""`truss push --watch` and `truss watch` as a user types them, against a real control plane
(a subprocess with the process runtime, real replicas); and how every kind of sync looks
(requirements, rebuild, a traceback's paths) against tests/patch_spec_server.py, which
answers per the contract the control plane builds to."""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.conftest import EXAMPLES
from tests.controlplane_support import ControlPlaneProcess, running_controlplane
from tests.patch_spec_server import PatchSpecServer
from tests.pty_terminal import PtyCommand
from truss_cli.cli.app import app
from truss_cli.cli.watch_output import line
from truss_cli.client.patches import _succeeded
from truss_cli.client.remotes import add_remote, trussrc_path
from truss_cli.sync.manifest import Manifest

runner = CliRunner()


class Remote:
    def __init__(self, cp: ControlPlaneProcess, home: Path) -> None:
        self.cp = cp
        self.home = home

    def truss(self, *args: str):  # type: ignore[no-untyped-def]
        environment = {"HOME": str(self.home), "COLUMNS": "200", "TRUSS_CACHE_DIR": str(self.home / "cache")}
        return runner.invoke(app, list(args), env=environment)

    def model_dir(self, name: str) -> Path:
        directory = self.home / "models" / name
        if not directory.exists():
            shutil.copytree(EXAMPLES / "hello", directory)
        return directory


@pytest.fixture(scope="module")
def remote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Remote]:
    base = tmp_path_factory.mktemp("watch")
    with running_controlplane(base / "cp") as cp:
        home = base / "home"
        home.mkdir()
        add_remote(trussrc_path(home), "local", cp.url, cp.admin_key, use=True)
        yield Remote(cp, home)


@pytest.mark.parametrize(
    "option",
    [["--promote"], ["--deployment-name", "candidate"], ["--version-bump", "MAJOR"], ["--environment", "staging"]],
    ids=["promote", "deployment-name", "version-bump", "environment"],
)
def test_watch_with_a_published_deployment_option_is_a_usage_error_and_sends_nothing(remote: Remote, option: list[str]) -> None:
    directory = remote.model_dir("conflicts")
    done = remote.truss("push", str(directory), "--model-name", "conflicts", "--watch", *option)
    assert done.exit_code == 2, done.output
    assert f"--watch pushes to the model's development deployment; it cannot be combined with {option[0]}" in done.stderr
    models = remote.cp.client.get("/v1/models").json()["models"]
    assert "conflicts" not in [model["name"] for model in models]  # nothing was created


def test_watch_without_a_development_deployment_says_to_push_with_watch_first(remote: Remote) -> None:
    directory = remote.model_dir("published-only")
    pushed = remote.truss("push", str(directory), "--model-name", "published-only")
    assert pushed.exit_code == 0, pushed.output
    done = remote.truss("watch", str(directory), "--model-name", "published-only")
    assert done.exit_code == 1, done.output
    assert "model published-only has no development deployment" in done.stderr
    assert "run `truss push --watch` first" in done.stderr


def test_watch_of_an_unknown_model_says_to_push_with_watch_first(remote: Remote) -> None:
    done = remote.truss("watch", str(remote.model_dir("never-pushed")), "--model-name", "never-pushed")
    assert done.exit_code == 1, done.output
    assert "run `truss push --watch` first" in done.stderr


def test_watch_names_the_model_from_config_yaml(remote: Remote) -> None:
    directory = remote.model_dir("config-named")
    (directory / "config.yaml").write_text((directory / "config.yaml").read_text().replace("model_name: hello", "model_name: named-in-config"))
    done = remote.truss("watch", str(directory))
    assert done.exit_code == 1, done.output
    assert "model named-in-config has no development deployment" in done.stderr


class WatchProcess:
    """`truss push --watch` (or `truss watch`) as a subprocess; its stdout lines queued as they come."""

    def __init__(self, remote: Remote, *args: str) -> None:
        environment = {**os.environ, "HOME": str(remote.home), "TRUSS_CACHE_DIR": str(remote.home / "cache"), "COLUMNS": "200"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "truss_cli", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=environment,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.stderr: list[str] = []
        threading.Thread(target=self._read, args=(self.process.stdout, self.lines.put), daemon=True).start()
        threading.Thread(target=self._read, args=(self.process.stderr, self.stderr.append), daemon=True).start()

    @staticmethod
    def _read(stream: Any, put: Callable[[str], None]) -> None:
        for raw in stream:
            put(raw.decode("utf-8", "replace"))

    def next_line(self, timeout: float = 600) -> str:
        """The next line on stdout (the timeout only stops a hang)."""
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no line after {timeout} s; stderr:\n{''.join(self.stderr)[-3000:]}") from None

    def next_lines_until(self, text: str) -> list[str]:
        seen = []
        while True:
            seen.append(self.next_line())
            if text in seen[-1]:
                return seen

    def interrupt(self) -> int:
        self.process.send_signal(signal.SIGINT)
        return self.process.wait(timeout=60)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def predict(remote: Remote, model: str) -> str:
    done = remote.truss("predict", "--model", model, "--deployment", "development", "-d", '{"name": "watch"}')
    assert done.exit_code == 0, done.output
    return json.loads(done.stdout)["greeting"]


def wait_for_watching(watch: WatchProcess, timeout: float = 900) -> None:
    deadline = time.monotonic() + timeout
    while not any("Watching" in line for line in watch.stderr):
        assert watch.process.poll() is None, "".join(watch.stderr)[-3000:]
        assert time.monotonic() < deadline, "".join(watch.stderr)[-3000:]
        time.sleep(0.2)


def test_push_watch_syncs_a_save_shows_a_syntax_error_and_recovers(remote: Remote) -> None:
    directory = remote.model_dir("watched")
    model = directory / "model" / "model.py"
    watch = WatchProcess(remote, "push", str(directory), "--model-name", "watched", "--watch")
    try:
        wait_for_watching(watch)
        assert "Development deployment of model watched created" in "".join(watch.stderr)
        model_id = remote.cp.client.get("/v1/models/watched").json()["id"]
        assert f"Dashboard: {remote.cp.url}/models/{model_id}/development\n" in watch.stderr  # stdout: syncs only
        assert predict(remote, "watched") == "Hello, watch!"
        model.write_text(model.read_text().replace('f"{self._greeting}, {name}!"', 'f"{self._greeting} again, {name}!"'))
        line = watch.next_line()
        assert "model/model.py" in line and "hot swap in" in line and " ms" in line, line
        assert predict(remote, "watched") == "Hello again, watch!"
        model.write_text(model.read_text().replace("def predict(self, model_input):", "def predict(self, model_input)"))
        failed = watch.next_lines_until("SyntaxError")
        assert "failed" in failed[0] and "model/model.py" in failed[0], failed
        assert predict(remote, "watched") == "Hello again, watch!"  # the old code keeps serving
        model.write_text(model.read_text().replace("def predict(self, model_input)", "def predict(self, model_input):").replace(" again", " once more"))
        recovered = watch.next_lines_until("model/model.py")
        assert "failed" not in recovered[-1], recovered
        assert predict(remote, "watched") == "Hello once more, watch!"
        assert watch.interrupt() == 130
        assert "Stopped watching" in "".join(watch.stderr)
    finally:
        watch.kill()


def test_watch_attaches_sends_offline_changes_first_and_prints_json_lines(remote: Remote) -> None:
    directory = remote.model_dir("attached")
    first = WatchProcess(remote, "push", str(directory), "--model-name", "attached", "--watch")
    try:
        wait_for_watching(first)
        assert first.interrupt() == 130
    finally:
        first.kill()
    model = directory / "model" / "model.py"
    model.write_text(model.read_text().replace('"Hello"', '"Hi"'))  # load() changed: a restart
    watch = WatchProcess(remote, "watch", str(directory), "--model-name", "attached", "--output", "json")
    try:
        first = json.loads(watch.next_line())  # where to see it in a browser, before any sync
        model_id = remote.cp.client.get("/v1/models/attached").json()["id"]
        assert first == {"action": "watching", "model": {"id": model_id, "name": "attached"},
                         "deployment_id": first["deployment_id"],
                         "dashboard_url": f"{remote.cp.url}/models/{model_id}/development"}, first
        offline = json.loads(watch.next_line())
        assert offline["files"] == ["model/model.py"] and offline["error"] is None
        assert offline["action"] == "restart", offline
        assert predict(remote, "attached") == "Hi, watch!"
        (directory / "model" / "helper.py").write_text("X = 1\n")
        saved = json.loads(watch.next_line())
        assert saved["files"] == ["model/helper.py"] and saved["error"] is None and saved["ms"] is not None
        assert watch.interrupt() == 130
    finally:
        watch.kill()


# -- a docker requirements sync's line, from the answer the control plane sends (controlplane/patches.py) --

def _docker_requirements_line(requirements: dict[str, list[str]], packages: dict[str, list[str]], reason: str) -> str:
    answer = {"action": "requirements", "reason": reason, "tree_hash": "b" * 64, "requirements": requirements,
              "system_packages": packages}
    result = _succeeded(["config.yaml"], answer, time.monotonic(), Manifest({}))
    assert result.to_dict()["system_packages"] == packages  # `--output json` carries it as the answer did
    return line(result).plain


def test_a_docker_sync_that_added_a_system_package_names_it_in_words_not_as_the_config_key() -> None:
    none: dict[str, list[str]] = {"added": [], "removed": [], "changed": []}
    only = _docker_requirements_line(none, {"added": ["jq"], "removed": []}, "system_packages changed: +jq")
    assert only.split(" ", 1)[1].startswith("config.yaml → requirements in ") and only.endswith(": system packages +jq"), only
    assert "system_packages" not in only
    both = _docker_requirements_line({**none, "added": ["six==1.16.0"]}, {"added": ["jq"], "removed": ["curl"]},
                                     "requirements changed: +six==1.16.0; system_packages changed: +jq, -curl")
    assert both.endswith(": +six==1.16.0; system packages +jq, -curl (removed ones stay installed until the next rebuild)"), both
    # The process runtime's answer has no system_packages: the requirement changes alone, as before.
    process = _succeeded(["config.yaml"], {"action": "requirements", "reason": "requirements changed: +six==1.16.0",
                                           "requirements": {**none, "added": ["six==1.16.0"]}}, None, Manifest({}))
    assert process.system_packages is None and line(process).plain.endswith(": +six==1.16.0")


# -- the CLI's lines for every kind of sync, against tests/patch_spec_server.py (C2, C3, C1) --

SPEC_CONFIG = b"model_name: m1\n"
SPEC_MODEL = b"class Model:\n    def predict(self, model_input):\n        return 'hello'\n"


class SpecHome:
    """A HOME whose ~/.trussrc names a patch spec server as the remote in use."""

    def __init__(self, server: PatchSpecServer, home: Path) -> None:
        home.mkdir()
        add_remote(trussrc_path(home), "spec", server.url, "key", use=True)
        self.home = home


@pytest.fixture
def spec(tmp_path: Path) -> Iterator[tuple[PatchSpecServer, Path, SpecHome]]:
    files = {"config.yaml": SPEC_CONFIG, "model/model.py": SPEC_MODEL}
    directory = tmp_path / "m1"
    for path, data in files.items():
        (directory / path).parent.mkdir(parents=True, exist_ok=True)
        (directory / path).write_bytes(data)
    with PatchSpecServer(files) as server:
        yield server, directory, SpecHome(server, tmp_path / "home")


def wait_for_stderr(watch: WatchProcess, text: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not any(text in line for line in watch.stderr):
        assert watch.process.poll() is None and time.monotonic() < deadline, "".join(watch.stderr)[-3000:]
        time.sleep(0.05)


def test_watch_says_what_requirements_changed_follows_a_rebuild_and_shows_local_paths(
    spec: tuple[PatchSpecServer, Path, SpecHome],
) -> None:
    server, directory, home = spec
    config, model = directory / "config.yaml", directory / "model" / "model.py"
    watch = WatchProcess(home, "watch", str(directory), "--model-name", "m1")  # type: ignore[arg-type]
    try:
        wait_for_watching(watch, timeout=120)
        config.write_bytes(SPEC_CONFIG + b"requirements:\n  - six==1.16.0\n")
        line = watch.next_line(timeout=120)
        assert "config.yaml → requirements in" in line and ": +six==1.16.0" in line, line
        config.write_bytes(SPEC_CONFIG + b"requirements:\n  - six==1.16.0\npython_version: py312\n")
        line = watch.next_line(timeout=120)
        assert "config.yaml → rebuild (config.yaml: python_version changed)" in line, line
        assert "the previous code serves until it is ready" in line
        tree_hash = server.state.rebuild["tree_hash"]  # type: ignore[index]
        wait_for_stderr(watch, f"rebuild {tree_hash[:12]}: building")
        server.rebuild_moves_to("deploying")
        wait_for_stderr(watch, f"rebuild {tree_hash[:12]}: deploying")
        server.rebuild_serves()
        line = watch.next_line(timeout=120)
        assert "config.yaml → rebuilt in" in line and "the new code serves" in line, line
        model.write_bytes(SPEC_MODEL + b"raise RuntimeError('at import')\n")
        failed = watch.next_lines_until("in <module>")
        assert "model/model.py → failed (import)" in failed[0], failed
        # The replica named the file relative to its tree; the user sees the file on this machine.
        assert any(f'File "{model}", line 4, in <module>' in line for line in failed), failed
        assert watch.interrupt() == 130
    finally:
        watch.kill()


def test_watch_json_prints_one_object_per_sync_and_one_when_a_rebuild_fails(spec: tuple[PatchSpecServer, Path, SpecHome]) -> None:
    server, directory, home = spec
    config = directory / "config.yaml"
    watch = WatchProcess(home, "watch", str(directory), "--model-name", "m1", "--output", "json")  # type: ignore[arg-type]
    try:
        wait_for_watching(watch, timeout=120)
        assert json.loads(watch.next_line(timeout=120))["action"] == "watching"
        config.write_bytes(SPEC_CONFIG + b"system_packages:\n  - no-such-package\n")
        asked = json.loads(watch.next_line(timeout=120))
        assert asked["action"] == "rebuild" and asked["files"] == ["config.yaml"] and asked["ms"] is None
        server.rebuild_fails("the build failed (exit code 100)", ["E: Unable to locate package no-such-package"])
        ended = json.loads(watch.next_line(timeout=120))
        assert ended["action"] == "failed" and ended["phase"] == "rebuild" and ended["tree_hash"] == asked["tree_hash"]
        assert ended["error"] == "the build failed (exit code 100)"
        assert ended["build_log_tail"] == ["E: Unable to locate package no-such-package"]
        config.write_bytes(SPEC_CONFIG)  # the fix: back to the tree that serves
        fixed = json.loads(watch.next_line(timeout=120))
        assert fixed["action"] == "hot_swap" and fixed["error"] is None
        assert watch.interrupt() == 130
    finally:
        watch.kill()


def TerminalWatch(home: SpecHome, *args: str) -> PtyCommand:
    """`truss watch` with stdout and stderr on a pseudo-terminal, as in a user's shell."""
    return PtyCommand(args, {"HOME": str(home.home), "TRUSS_CACHE_DIR": str(home.home / "cache")}, columns=200)


def test_on_a_terminal_a_rebuild_shows_a_status_line_until_the_new_code_serves(spec: tuple[PatchSpecServer, Path, SpecHome]) -> None:
    server, directory, home = spec
    watch = TerminalWatch(home, "watch", str(directory), "--model-name", "m1")
    try:
        watch.wait_for_text("Watching")
        (directory / "config.yaml").write_bytes(SPEC_CONFIG + b"python_version: py312\n")
        watch.wait_for_text("Rebuilding (building")
        assert "the previous code serves meanwhile" in watch.screen
        tree_hash = server.state.rebuild["tree_hash"]  # type: ignore[index]
        assert f"rebuild {tree_hash[:12]}: building" not in watch.screen  # the status line, not a line per phase
        server.rebuild_moves_to("deploying")
        watch.wait_for_text("Rebuilding (deploying")
        server.rebuild_serves()
        watch.wait_for_text("the new code serves")
        assert "rebuilt in" in watch.screen
        watch.process.send_signal(signal.SIGINT)
        assert watch.process.wait(timeout=60) == 130
    finally:
        watch.close()


# -- end to end on the real control plane (C2, C3) ---------------------------------------------

SIX_MODEL = '''
class Model:
    def predict(self, model_input):
        try:
            import six
        except ImportError:
            return {"six": None, "marker": "a"}
        return {"six": six.__version__, "marker": "a"}
'''


def predict_raw(remote: Remote, model: str) -> dict[str, Any]:
    done = remote.truss("predict", "--model", model, "--deployment", "development", "-d", "{}")
    assert done.exit_code == 0, done.output
    return json.loads(done.stdout)


def test_push_watch_reports_a_requirements_patch_and_a_rebuild_to_its_end_on_the_real_control_plane(remote: Remote) -> None:
    directory = remote.model_dir("rebuilt-watch")
    config = directory / "config.yaml"
    hello = config.read_text()
    (directory / "model" / "model.py").write_text(SIX_MODEL)
    watch = WatchProcess(remote, "push", str(directory), "--model-name", "rebuilt-watch", "--watch", "--output", "json")
    try:
        wait_for_watching(watch)
        assert json.loads(watch.next_line())["action"] == "watching"
        assert predict_raw(remote, "rebuilt-watch") == {"six": None, "marker": "a"}
        config.write_text(hello.replace("requirements: []", "requirements:\n  - six==1.16.0"))
        added = json.loads(watch.next_line())
        assert added["action"] == "requirements" and added["error"] is None, added
        assert added["requirements"] == {"added": ["six==1.16.0"], "removed": [], "changed": []}
        assert added["files"] == ["config.yaml"] and added["ms"] is not None
        assert predict_raw(remote, "rebuilt-watch") == {"six": "1.16.0", "marker": "a"}

        config.write_text(config.read_text().replace('cpu: "1"', "cpu: 500m"))  # the process runtime rebuilds
        asked = json.loads(watch.next_line())
        assert asked["action"] == "rebuild" and "resources" in asked["reason"] and asked["ms"] is None, asked
        assert predict_raw(remote, "rebuilt-watch") == {"six": "1.16.0", "marker": "a"}  # the old replica serves meanwhile
        # A save while it rebuilds: deferred behind it when the rebuild still runs (else patched
        # after it); either way reported once its code serves, with the time from the save.
        model = directory / "model" / "model.py"
        model.write_text(SIX_MODEL.replace('"a"', '"b"'))
        seen: list[dict[str, Any]] = []
        while not (any(item["action"] == "rebuilt" for item in seen) and any(item["action"] in ("hot_swap", "restart", "synced") for item in seen)):
            seen.append(json.loads(watch.next_line()))
            assert seen[-1]["error"] is None and seen[-1]["action"] in ("deferred", "rebuilt", "hot_swap", "restart", "synced"), seen
        ended = next(item for item in seen if item["action"] == "rebuilt")
        assert ended["tree_hash"] == asked["tree_hash"] and ended["ms"] is not None and ended["ms"] > 0, ended
        saved = next(item for item in seen if item["action"] in ("hot_swap", "restart", "synced"))
        assert saved["files"] == ["model/model.py"] and saved["ms"] is not None, seen
        assert any(f"rebuild {asked['tree_hash'][:12]}: building" in line for line in watch.stderr), watch.stderr
        assert predict_raw(remote, "rebuilt-watch") == {"six": "1.16.0", "marker": "b"}

        # A build that fails: a download nothing answers. The old code serves on; the build log says why.
        config.write_text(config.read_text() + "external_data:\n  - url: http://127.0.0.1:9/weights.bin\n    local_data_path: weights.bin\n")
        asked = json.loads(watch.next_line())
        assert asked["action"] == "rebuild", asked
        failed = json.loads(watch.next_line())
        assert failed["action"] == "failed" and failed["phase"] == "rebuild" and failed["tree_hash"] == asked["tree_hash"], failed
        assert failed["error"] and failed["build_log_tail"], failed
        assert predict_raw(remote, "rebuilt-watch") == {"six": "1.16.0", "marker": "b"}
        assert watch.interrupt() == 130
    finally:
        watch.kill()


def test_push_watch_shows_a_load_failure_with_the_users_own_file_paths(remote: Remote) -> None:
    directory = remote.model_dir("traced")
    model = directory / "model" / "model.py"
    watch = WatchProcess(remote, "push", str(directory), "--model-name", "traced", "--watch")
    try:
        wait_for_watching(watch)
        model.write_text(model.read_text().replace('self._greeting = "Hello"', 'raise RuntimeError("no weights")'))
        failed = [watch.next_line()]
        while not failed[-1].startswith("RuntimeError: no weights"):  # the traceback's last line
            failed.append(watch.next_line())
        assert "model/model.py → failed (load)" in failed[0], failed
        # The replica runs a private copy of the tree; the user sees the file on this machine.
        assert any(f'File "{model}", line ' in line and "in load" in line for line in failed), failed
        assert not any("replicas/" in line for line in failed), failed
        assert predict(remote, "traced") == "Hello, watch!"  # the old code keeps serving
        assert watch.interrupt() == 130
    finally:
        watch.kill()
