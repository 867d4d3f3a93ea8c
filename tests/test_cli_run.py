"""`truss run` as a real subprocess: environment, readiness, logs, Ctrl-C, and its failures."""

from __future__ import annotations

import http.server
import re
import signal
import socket
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import EXAMPLES, installed_python
from run_helpers import READY_LINE, TrussRun, port_is_free, shared_cache
from truss_cli.cli.app import app


@pytest.fixture
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shared_cache(tmp_path_factory)


def test_run_serves_hello_until_ctrl_c(cache: Path, tmp_path: Path) -> None:
    run = TrussRun(EXAMPLES / "hello", cache, tmp_path)  # --port 0: the server picks one
    try:
        url = run.wait_for_url()
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", url) and run.port != 0
        assert run.predict({"name": "world"}).json() == {"greeting": "Hello, world!"}
        assert f"Call it with: truss predict --url {url} -d '<json>'" in run.stdout
    finally:
        code = run.stop(signal.SIGINT)
    assert code == 130, run.stderr  # as a shell reports a command ended by Ctrl-C
    assert "Stopped." in run.stderr
    assert port_is_free(run.port), "the model server outlived truss run"


def test_second_run_with_the_same_requirements_creates_nothing(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = TrussRun(EXAMPLES / "hello", cache, tmp_path / "logs")
    try:
        first.wait_for_url()
    finally:
        assert first.stop(signal.SIGTERM) == 130, first.stderr
    assert "Created environment" in first.stderr
    (env_dir,) = (cache / "envs").iterdir()
    before = (env_dir.stat().st_ino, env_dir.stat().st_mtime_ns, (env_dir / "pyvenv.cfg").stat().st_mtime_ns)

    # The streaming example has the same (empty) requirements: same environment.
    second = TrussRun(EXAMPLES / "streaming", cache, tmp_path / "logs")
    try:
        second.wait_for_url()
        response = second.predict({"text": "one two three", "delay": 0})
        assert response.text == "one two three\n"
    finally:
        assert second.stop(signal.SIGINT) == 130, second.stderr
    assert f"Using cached environment {env_dir}\n" in second.stderr
    assert "Created environment" not in second.stderr
    assert list((cache / "envs").iterdir()) == [env_dir]
    after = (env_dir.stat().st_ino, env_dir.stat().st_mtime_ns, (env_dir / "pyvenv.cfg").stat().st_mtime_ns)
    assert after == before


def test_broken_config_exits_2_and_starts_nothing(make_model_dir, tmp_path: Path) -> None:
    model_dir = make_model_dir(
        "class Model:\n    def predict(self, x):\n        return x\n",
        "runtime:\n  predict_concurrency: two\n",
    )
    cache = tmp_path / "cache"
    run = TrussRun(model_dir, cache, tmp_path / "logs")
    assert run.wait_exit() == 2
    assert "config.yaml: runtime.predict_concurrency: expected an integer >= 1" in run.stderr
    assert "Traceback" not in run.stderr
    assert not cache.exists(), "an environment was prepared for an invalid config"


def test_a_syntax_error_in_model_py_fails_before_building_anything(make_model_dir, tmp_path: Path) -> None:
    model_dir = make_model_dir("class Model:\n    def predict(self, x)\n        return x\n")
    cache = tmp_path / "cache"
    run = TrussRun(model_dir, cache, tmp_path / "logs")
    assert run.wait_exit() == 2
    assert f"{model_dir / 'model' / 'model.py'}:2:" in run.stderr
    assert "Traceback" not in run.stderr
    assert not (cache / "envs").exists(), "an environment was prepared for a model that cannot load"


def test_port_in_use_fails_before_building_anything(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        run = TrussRun(EXAMPLES / "hello", cache, tmp_path / "logs", port=port)
        code = run.wait_exit()
    assert code == 1
    assert f"Error: port {port} on 127.0.0.1 is already in use\n" in run.stderr
    assert not cache.exists()


def test_load_failure_exits_nonzero_and_repeats_the_cause(make_model_dir, cache: Path, tmp_path: Path) -> None:
    model_dir = make_model_dir(
        """
        class Model:
            def load(self):
                raise RuntimeError("weights are missing")

            def predict(self, model_input):
                return model_input
        """
    )
    run = TrussRun(model_dir, cache, tmp_path / "logs")
    code = run.wait_exit()
    assert code == 1
    assert "Traceback" in run.stderr  # the server's log was streamed through
    # The final error repeats the cause from the server's status, so it is visible without
    # scrolling up the traceback.
    (final_error,) = [line for line in run.stderr.splitlines() if line.startswith("Error: ")]
    assert final_error == (
        "Error: the model server exited with code 1 before it was ready: "
        "load failed: RuntimeError: weights are missing (model/model.py, line 4)"
    ), run.stderr
    assert READY_LINE not in run.stdout


def test_the_models_output_appears_while_it_is_still_loading(make_model_dir, cache: Path, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    model_dir = make_model_dir(
        f"""
        import os, sys, time

        class Model:
            def load(self):
                print("stdout: fetching weights")
                print("stderr: 40% done", end="\\r", file=sys.stderr)  # a progress bar, no newline
                while not os.path.exists({str(gate)!r}):
                    time.sleep(0.02)

            def predict(self, model_input):
                return model_input
        """
    )
    run = TrussRun(model_dir, cache, tmp_path / "logs")
    try:
        deadline = time.monotonic() + 120
        # Both of the model's streams go to truss run's log (stderr), stdout keeps the results.
        while not ("stdout: fetching weights" in run.stderr and "stderr: 40% done" in run.stderr):
            assert run.process.poll() is None, run.stderr
            assert time.monotonic() < deadline, f"the model's output did not appear while it loaded:\n{run.stdout}\n{run.stderr}"
            time.sleep(0.05)
        assert READY_LINE not in run.stdout
        gate.touch()
        run.wait_for_url()
    finally:
        gate.touch()
        code = run.stop()
    assert code == 130, run.stderr
    assert "fetching weights" not in run.stdout


def test_started_with_sigint_ignored_it_still_stops_on_sigint(cache: Path, tmp_path: Path) -> None:
    # As a shell starts `truss run ... &` in a script, or nohup does.
    run = TrussRun(EXAMPLES / "hello", cache, tmp_path, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        run.wait_for_url()
        code = run.stop(signal.SIGINT)
    finally:
        run.kill()
    assert code == 130, run.stderr
    assert "Stopped." in run.stderr
    assert port_is_free(run.port), "the model server outlived truss run"


def test_unknown_config_keys_warn_and_the_model_still_runs(make_model_dir, cache: Path, tmp_path: Path) -> None:
    model_dir = make_model_dir(
        "class Model:\n    def predict(self, model_input):\n        return model_input\n",
        "model_name: echo\nmodel_nmae: typo\nruntime:\n  predict_concurency: 2\n",
    )
    run = TrussRun(model_dir, cache, tmp_path / "logs")
    try:
        run.wait_for_url()
        answer = run.predict({"x": 1})
    finally:
        run.stop()
    assert answer.json() == {"x": 1}
    # The server logs the same warning; this one is truss run's own, before the server starts.
    before_start = run.stderr.split("Starting the model server", 1)[0]
    assert re.search(r"Warning: \S*config\.yaml: ignoring unknown keys: model_nmae, runtime\.predict_concurency", before_start)


def test_a_secret_value_in_config_yaml_works_but_is_named_in_a_warning(make_model_dir, cache: Path, tmp_path: Path) -> None:
    model_dir = make_model_dir(
        """
        class Model:
            def __init__(self, secrets, **kwargs):
                self._secrets = secrets

            def predict(self, model_input):
                return {"token": self._secrets["api_token"]}
        """,
        "secrets:\n  api_token: pasted-in-the-file-42\n  other_token: null\n",
    )
    run = TrussRun(model_dir, cache, tmp_path / "logs")
    try:
        run.wait_for_url()
        answer = run.predict({}).json()
    finally:
        run.stop()
    assert answer == {"token": "pasted-in-the-file-42"}
    (warning,) = [line for line in run.stderr.splitlines() if line.startswith("Warning: ")]
    assert warning.endswith(
        "config.yaml: secrets.api_token has a value in the file; `truss run` uses it but images never include it "
        "— pass it as TRUSS_SECRET_api_token instead"
    )  # other_token is declared without a value: nothing to warn about
    assert "pasted-in-the-file-42" not in run.stdout + run.stderr


def test_a_file_instead_of_a_directory_is_named_as_such(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["run", str(EXAMPLES / "hello" / "config.yaml")])
    assert result.exit_code == 2, result.output
    assert result.stderr == (
        f"Error: {EXAMPLES / 'hello' / 'config.yaml'}: is a file, not a model directory "
        "(give the directory that holds config.yaml)\n"
    )


def test_model_sees_config_variables_and_secrets_and_its_output_is_streamed(make_model_dir, cache: Path, tmp_path: Path) -> None:
    model_dir = make_model_dir(
        """
        import os

        class Model:
            def __init__(self, secrets, **kwargs):
                self._secrets = secrets

            def load(self):
                print("loading the weights now")

            def predict(self, model_input):
                return {
                    "greeting": os.environ.get("GREETING"),
                    "token": self._secrets["api_token"],
                    "cwd": os.getcwd(),
                }
        """,
        "environment_variables: {GREETING: hi}\nsecrets: {api_token: null}\n",
    )
    run = TrussRun(model_dir, cache, tmp_path / "logs", env={"TRUSS_SECRET_api_token": "s3cr3t-value"})
    try:
        run.wait_for_url()
        answer = run.predict({}).json()
    finally:
        run.stop()
    assert answer == {"greeting": "hi", "token": "s3cr3t-value", "cwd": str(model_dir.resolve())}
    assert "loading the weights now" in run.stdout + run.stderr  # the model's own output is streamed
    assert "s3cr3t-value" not in run.stdout + run.stderr


@pytest.mark.skipif(installed_python((3, 9)) is None, reason="Python 3.9 is not installed here")
def test_runs_on_the_python_version_the_config_asks_for(make_model_dir, cache: Path, tmp_path: Path) -> None:
    model_dir = make_model_dir(
        """
        import platform

        class Model:
            def predict(self, model_input):
                return {"python": platform.python_version()}
        """,
        "python_version: py39\n",
    )
    run = TrussRun(model_dir, cache, tmp_path / "logs")
    try:
        run.wait_for_url()
        answer = run.predict({}).json()
    finally:
        run.stop()
    assert answer["python"].startswith("3.9.")
    assert "Warning" not in run.stderr


def test_text_classifier_example_trains_on_its_data_and_classifies(cache: Path, tmp_path: Path) -> None:
    run = TrussRun(EXAMPLES / "text-classifier", cache, tmp_path / "logs")
    try:
        run.wait_for_url(timeout=600)  # the first run downloads scikit-learn
        positive = run.predict({"text": "I loved it, wonderful service"}).json()
        negative = run.predict({"text": "terrible and rude, a waste of money"}).json()
    finally:
        run.stop()
    assert positive["label"] == "positive"
    assert negative["label"] == "negative"
    assert set(positive["probabilities"]) == {"positive", "negative"}
    assert abs(sum(positive["probabilities"].values()) - 1) < 1e-3


def test_ctrl_c_while_the_environment_is_built_leaves_nothing_behind(make_model_dir, tmp_path: Path) -> None:
    # A package index on this machine that answers only when the test says so: the install
    # is caught mid-way deterministically, and nothing comes from the network.
    started, release = threading.Event(), threading.Event()

    class StalledIndex(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            started.set()
            release.wait(60)
            self.send_error(404)

        def log_message(self, *args: object) -> None:
            pass

    index = http.server.ThreadingHTTPServer(("127.0.0.1", 0), StalledIndex)
    threading.Thread(target=index.serve_forever, daemon=True).start()
    model_dir = make_model_dir(
        "class Model:\n    def predict(self, x):\n        return x\n",
        f"requirements:\n  - --extra-index-url http://127.0.0.1:{index.server_address[1]}/simple/\n  - slow-build\n",
    )
    cache = tmp_path / "cache"
    run = TrussRun(model_dir, cache, tmp_path / "logs")
    try:
        deadline = time.monotonic() + 120
        while not started.is_set():
            assert run.process.poll() is None, run.stderr
            assert time.monotonic() < deadline, "the install never asked the index"
            time.sleep(0.05)
        assert [".staging-" in p.name for p in (cache / "envs").iterdir()] == [True]
        code = run.stop(signal.SIGINT)
    finally:
        release.set()
        index.shutdown()
        index.server_close()
        run.kill()
    assert code == 130
    assert "Interrupted" in run.stderr
    assert list((cache / "envs").iterdir()) == []


def test_a_second_run_on_the_same_port_fails_clearly_and_never_says_ready(cache: Path, tmp_path: Path) -> None:
    first = TrussRun(EXAMPLES / "hello", cache, tmp_path / "first")
    try:
        first.wait_for_url()
        second = TrussRun(EXAMPLES / "hello", cache, tmp_path / "second", port=first.port)
        assert second.wait_exit() == 1
        assert READY_LINE not in second.stdout
        assert f"Error: port {first.port} on 127.0.0.1 is already in use\n" in second.stderr
        assert first.predict({"name": "first"}).json() == {"greeting": "Hello, first!"}  # untouched
    finally:
        first.stop()


def test_ctrl_c_while_the_model_loads_stops_it_with_130(make_model_dir, cache: Path, tmp_path: Path) -> None:
    model_dir = make_model_dir(
        """
        import time

        class Model:
            def load(self):
                print("loading for a long time", flush=True)
                time.sleep(600)

            def predict(self, model_input):
                return model_input
        """
    )
    run = TrussRun(model_dir, cache, tmp_path / "logs")
    try:
        deadline = time.monotonic() + 120
        while "loading for a long time" not in run.stderr:
            assert run.process.poll() is None, run.stderr
            assert time.monotonic() < deadline, run.stderr
            time.sleep(0.05)
        code = run.stop(signal.SIGINT)
    finally:
        run.kill()
    assert code == 130, run.stderr
    assert "Stopped." in run.stderr
    assert READY_LINE not in run.stdout


def test_a_predict_that_raises_shows_the_exception_to_the_local_caller(make_model_dir, cache: Path, tmp_path: Path) -> None:
    # truss run exposes errors to its caller: the one calling is the one who wrote the model.
    model_dir = make_model_dir(
        """
        class Model:
            def predict(self, model_input):
                raise ValueError("cannot handle this input")
        """
    )
    run = TrussRun(model_dir, cache, tmp_path / "logs")
    try:
        url = run.wait_for_url()
        result = CliRunner().invoke(app, ["predict", "--url", url, "-d", "{}"])
    finally:
        run.stop()
    assert result.exit_code == 1
    first_line = result.stderr.splitlines()[0]
    assert first_line.startswith("Error: the model server answered 500 Internal Server Error: "), result.stderr
    assert "ValueError: cannot handle this input" in first_line
    assert "{" not in first_line
