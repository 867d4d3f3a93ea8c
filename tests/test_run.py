"""`truss run` as a real subprocess: environment, readiness, logs, Ctrl-C, and its failures."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

import httpx
import pytest

from conftest import EXAMPLES, free_port
from truss_cli.local.interpreters import find_interpreter

READY_LINE = "Model server ready at "
PREDICT_PATH = "/v1/models/model:predict"


def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One TRUSS_CACHE_DIR for the whole test session: environments are built once per run.

    uv's own download cache stays where it is, so a rebuild costs about a second.
    """
    path = tmp_path_factory.getbasetemp() / "truss-cache"
    path.mkdir(exist_ok=True)
    return path


class TrussRun:
    """`python -m truss_cli run MODEL_DIR --port P`, stdout and stderr captured to files."""

    def __init__(self, model_dir: Path, cache: Path, logs: Path, port: Optional[int] = None, env: Optional[dict] = None):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        logs.mkdir(parents=True, exist_ok=True)
        self.stdout_path = logs / f"run-{self.port}.out"
        self.stderr_path = logs / f"run-{self.port}.err"
        full_env = {**os.environ, "TRUSS_CACHE_DIR": str(cache), "COLUMNS": "200", **(env or {})}
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "truss_cli", "run", str(model_dir), "--port", str(self.port)],
                env=full_env,
                stdout=out,
                stderr=err,
            )

    @property
    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def wait_for_url(self, timeout: float = 300) -> str:
        """The URL `truss run` prints once the model is ready; fails if it exits first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.stdout.splitlines():
                if line.startswith(READY_LINE):
                    return line[len(READY_LINE):].split()[0]
            if self.process.poll() is not None:
                raise AssertionError(f"truss run exited with {self.process.returncode}:\n{self.stdout}\n{self.stderr}")
            time.sleep(0.05)
        raise AssertionError(f"truss run printed no URL in {timeout}s:\n{self.stdout}\n{self.stderr}")

    def wait_exit(self, timeout: float = 120) -> int:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"truss run did not exit:\n{self.stdout}\n{self.stderr}") from None

    def stop(self, sig: int = signal.SIGINT) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.wait_exit(30)

    def predict(self, payload: dict) -> httpx.Response:
        return httpx.post(self.url + PREDICT_PATH, json=payload, timeout=60)


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def flat(text: str) -> str:
    """Output with rich's line wrapping undone, for substring checks."""
    return " ".join(text.split())


@pytest.fixture
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shared_cache(tmp_path_factory)


def test_run_serves_hello_until_ctrl_c(cache: Path, tmp_path: Path) -> None:
    run = TrussRun(EXAMPLES / "hello", cache, tmp_path)
    try:
        url = run.wait_for_url()
        assert url == run.url
        assert run.predict({"name": "world"}).json() == {"greeting": "Hello, world!"}
    finally:
        code = run.stop(signal.SIGINT)
    assert code == 0, run.stderr
    assert "Stopped." in run.stderr
    assert port_is_free(run.port), "the model server outlived truss run"


def test_second_run_with_the_same_requirements_creates_nothing(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = TrussRun(EXAMPLES / "hello", cache, tmp_path / "logs")
    try:
        first.wait_for_url()
    finally:
        assert first.stop(signal.SIGTERM) == 0, first.stderr
    assert "Created environment" in flat(first.stderr)
    (env_dir,) = (cache / "envs").iterdir()
    before = (env_dir.stat().st_ino, env_dir.stat().st_mtime_ns, (env_dir / "pyvenv.cfg").stat().st_mtime_ns)

    # The streaming example has the same (empty) requirements: same environment.
    second = TrussRun(EXAMPLES / "streaming", cache, tmp_path / "logs")
    try:
        second.wait_for_url()
        response = second.predict({"text": "one two three", "delay": 0})
        assert response.text == "one two three\n"
    finally:
        assert second.stop(signal.SIGINT) == 0, second.stderr
    assert "Using cached environment" in flat(second.stderr)
    assert "Created environment" not in flat(second.stderr)
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
    assert "config.yaml: runtime.predict_concurrency: expected an integer >= 1" in flat(run.stderr)
    assert "Traceback" not in run.stderr
    assert not cache.exists(), "an environment was prepared for an invalid config"


def test_port_in_use_fails_before_building_anything(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        run = TrussRun(EXAMPLES / "hello", cache, tmp_path / "logs", port=port)
        code = run.wait_exit()
    assert code == 1
    assert f"port {port} on 127.0.0.1 is already in use" in flat(run.stderr)
    assert not cache.exists()


def test_load_failure_exits_nonzero_with_the_traceback(make_model_dir, cache: Path, tmp_path: Path) -> None:
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
    assert code != 0
    assert "weights are missing" in run.stderr
    assert "before it was ready" in flat(run.stderr)
    assert READY_LINE not in run.stdout
    assert port_is_free(run.port)


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


@pytest.mark.skipif(find_interpreter((3, 9)) is None, reason="Python 3.9 is not installed here")
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
    # A local package whose build blocks until the test says so: the build is caught mid-way
    # deterministically. Its in-tree build backend needs nothing from the network.
    package = tmp_path / "slow-build"
    started, release = tmp_path / "build-started", tmp_path / "build-release"
    package.mkdir()
    (package / "pyproject.toml").write_text(
        '[project]\nname = "slow-build"\nversion = "1.0"\n'
        '[build-system]\nrequires = []\nbuild-backend = "backend"\nbackend-path = ["."]\n'
    )
    (package / "backend.py").write_text(
        "import pathlib, time\n"
        "def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):\n"
        f"    pathlib.Path({str(started)!r}).touch()\n"
        "    deadline = time.time() + 60\n"
        f"    while not pathlib.Path({str(release)!r}).exists() and time.time() < deadline:\n"
        "        time.sleep(0.05)\n"
        "    raise SystemExit('released')\n"
    )
    model_dir = make_model_dir(
        "class Model:\n    def predict(self, x):\n        return x\n",
        f"requirements:\n  - slow-build @ {package.as_uri()}\n",
    )
    cache = tmp_path / "cache"
    run = TrussRun(model_dir, cache, tmp_path / "logs")
    try:
        deadline = time.monotonic() + 120
        while not started.exists():
            assert run.process.poll() is None, run.stderr
            assert time.monotonic() < deadline, "the build never started"
            time.sleep(0.05)
        assert [p.name.startswith(".staging-") for p in (cache / "envs").iterdir()] == [True]
        code = run.stop(signal.SIGINT)
    finally:
        release.touch()
    assert code == 130
    assert "Interrupted" in run.stderr
    assert list((cache / "envs").iterdir()) == []
