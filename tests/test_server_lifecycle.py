"""Loading, readiness, health and concurrency of a real model server process.

Nothing here waits for a fixed time: models block on gate files the test creates once it has
seen what it needs (each wait has a generous safety limit, so a bug fails instead of hanging).
"""

from __future__ import annotations

import threading

import httpx
import pytest

from conftest import REPO_ROOT
from test_server_harness import ModelServer, start_ready, wait_for
from truss_cli.server.protocol import PREDICT_PATH, READINESS_PATH, SCHEMA_PATH

IN_FLIGHT_PREDICTS = 'truss_requests_in_flight{route="predict"}'

# Blocks until the file `path` exists (at most 60 s, so a broken test fails rather than hangs).
GATE_HELPER = """
import os
import time


def wait_for_gate(path, seconds=60):
    deadline = time.monotonic() + seconds
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.01)
"""

GATED_FAILING_LOAD = GATE_HELPER + """

class Model:
    def __init__(self, data_dir):
        self.gate = data_dir / "fail-now"

    def load(self):
        wait_for_gate(self.gate)
        raise RuntimeError("weights missing 41d7")

    def predict(self, model_input):
        return model_input
"""


def test_a_failing_load_never_gets_ready_logs_the_traceback_and_exits_non_zero(make_model_dir):
    model_dir = make_model_dir(GATED_FAILING_LOAD, files={"data/.keep": ""})
    statuses = []

    def poll_readiness() -> bool:
        try:
            statuses.append(httpx.get(server.url + READINESS_PATH, timeout=2).status_code)
        except httpx.HTTPError:
            pass
        return not server.alive()

    with ModelServer(model_dir) as server:
        server.wait_live()
        assert server.client.get(READINESS_PATH).status_code == 503  # loading
        (model_dir / "data" / "fail-now").touch()
        wait_for(poll_readiness, "the server to exit after load() raised")
        assert server.wait_exit() != 0
    assert 200 not in statuses
    log = server.log()
    assert "Traceback" in log and "RuntimeError: weights missing 41d7" in log
    # The traceback starts in the model's code: no server or import machinery frames.
    assert str(REPO_ROOT / "truss_cli") not in log and "importlib" not in log
    assert server.log_lines()[-1].startswith("load failed: RuntimeError: weights missing 41d7 (model/model.py, line ")
    # uvicorn says it is running before the model loads, never after the failure.
    assert log.count("Uvicorn running") == 1
    assert log.index("Uvicorn running") < log.index("Model failed to load")


@pytest.mark.parametrize(
    "model_py,config_yaml,last_line",
    [
        (
            "class Other:\n    pass\n",
            "",
            "load failed: model/model.py: no class named 'Model' (config.yaml key model_class_name)",
        ),
        (
            "class Model:\n    def load(self):\n        pass\n",
            "",
            "load failed: model/model.py, class Model: no `predict` method; the model class must define one",
        ),
        (
            "class Model:\n    def __init__(self, weights):\n        pass\n\n    def predict(self, x):\n        return x\n",
            "",
            "load failed: model/model.py, class Model: `__init__` cannot be called (missing a required argument: "
            "'weights'); it may take only these keyword arguments: config, data_dir, secrets, environment",
        ),
        (
            "class Model:\n    def predict(self, x):\n        yield x\n\n    def postprocess(self, x):\n        return x\n",
            "",
            "load failed: model/model.py, class Model: `predict` is a generator (it streams), so `postprocess` "
            "would never see a result; remove `postprocess` or make `predict` return its result",
        ),
        (
            "class Model:\n    def predict(self, x):\n        return x\n",
            "model_module_dir: src\n",
            "load failed: src/model.py: not found in {model_dir} (config.yaml keys model_module_dir and "
            "model_class_filename)",
        ),
    ],
    ids=["missing-class", "missing-predict", "init-signature", "streaming-postprocess", "missing-file"],
)
def test_a_model_definition_mistake_is_one_line_naming_file_and_class(make_model_dir, model_py, config_yaml, last_line):
    model_dir = make_model_dir(model_py, config_yaml)
    with ModelServer(model_dir) as server:
        assert server.wait_exit() != 0
    log = server.log()
    assert "Traceback" not in log
    assert server.log_lines()[-1] == last_line.format(model_dir=model_dir)
    assert log.count(last_line.format(model_dir=model_dir)) == 1


@pytest.mark.parametrize(
    "model_py,files,shown,last_line",
    [
        (
            "class Model:\n    def predict(self model_input):\n        return 1\n",
            {},
            ['model/model.py", line 2', "def predict(self model_input):", "^", "SyntaxError: invalid syntax"],
            "load failed: SyntaxError: invalid syntax (model/model.py, line 2)",
        ),
        (
            "import helpers\n\n\nclass Model:\n    def predict(self, x):\n        return x\n",
            {"model/helpers.py": "x = (\n"},
            ['model/model.py", line 1, in <module>', 'model/helpers.py", line 1', "^", "SyntaxError: "],
            "load failed: SyntaxError: '(' was never closed (model/helpers.py, line 1)",
        ),
        (
            "import not_a_module_3f9\n",
            {},
            ['model/model.py", line 1, in <module>', "ModuleNotFoundError: No module named 'not_a_module_3f9'"],
            "load failed: ModuleNotFoundError: No module named 'not_a_module_3f9' (model/model.py, line 1)",
        ),
        (
            "import helpers\n\n\nclass Model:\n    def load(self):\n        helpers.divide()\n\n    def predict(self, x):\n        return x\n",
            {"model/helpers.py": "def divide():\n    return 1 / 0\n"},
            ['model/model.py", line 6, in load', 'model/helpers.py", line 2, in divide', "ZeroDivisionError"],
            "load failed: ZeroDivisionError: division by zero (model/helpers.py, line 2)",
        ),
        (
            "class Model:\n    async def load(self):\n        raise KeyError('no weights')\n\n    def predict(self, x):\n        return x\n",
            {},
            ['model/model.py", line 3, in load', "KeyError: 'no weights'"],
            "load failed: KeyError: 'no weights' (model/model.py, line 3)",
        ),
    ],
    ids=["syntax-error", "syntax-error-in-an-import", "import-error", "load-raises", "async-load-raises"],
)
def test_an_error_in_model_code_shows_only_model_frames_and_ends_with_a_summary(make_model_dir, model_py, files, shown, last_line):
    with ModelServer(make_model_dir(model_py, files=files)) as server:
        assert server.wait_exit() != 0
    log = server.log()
    for text in shown:
        assert text in log
    assert str(REPO_ROOT / "truss_cli") not in log
    assert "importlib" not in log and "<frozen" not in log and "concurrent" not in log
    assert server.log_lines()[-1] == last_line


SLOW_LOAD = GATE_HELPER + """

class Model:
    def __init__(self, data_dir):
        self.gate = data_dir / "loaded"

    def load(self):
        wait_for_gate(self.gate)

    def predict(self, model_input):
        return "ok"
"""


def test_server_is_live_at_once_and_ready_only_after_load(make_model_dir):
    model_dir = make_model_dir(SLOW_LOAD, files={"data/.keep": ""})
    with ModelServer(model_dir) as server:
        server.wait_live()
        assert server.client.get(READINESS_PATH).status_code == 503
        not_ready = server.predict({})
        assert not_ready.status_code == 503 and "not ready" in not_ready.json()["error"]
        assert server.client.get(SCHEMA_PATH).status_code == 503
        (model_dir / "data" / "loaded").touch()
        server.wait_ready()
        assert server.predict({}).json() == "ok"


ASYNC_LOAD = """
import asyncio


class Model:
    async def load(self):
        await asyncio.sleep(0)
        self.loop = asyncio.get_running_loop()
        self.queue = asyncio.Queue()
        await self.queue.put("made in load()")

    async def predict(self, model_input):
        return {"same_loop": asyncio.get_running_loop() is self.loop, "item": self.queue.get_nowait()}
"""


def test_async_load_runs_on_the_servers_loop(tmp_path):
    # What an async load() creates (clients, queues) must be usable from async predict.
    with start_ready(tmp_path / "m", ASYNC_LOAD) as server:
        assert server.predict({}).json() == {"same_loop": True, "item": "made in load()"}


HEALTH = """
class Model:
    def __init__(self, data_dir):
        self.data_dir = data_dir

    def is_healthy(self):
        if (self.data_dir / "broken").exists():
            raise RuntimeError("health probe broke 7a1e")
        return not (self.data_dir / "unhealthy").exists()

    def predict(self, model_input):
        return model_input
"""


def test_is_healthy_false_or_raising_makes_readiness_503(tmp_path):
    with start_ready(tmp_path / "m", HEALTH, files={"data/.keep": ""}) as server:
        data = server.model_dir / "data"
        (data / "unhealthy").touch()
        unhealthy = server.client.get(READINESS_PATH)
        assert unhealthy.status_code == 503 and "is_healthy" in unhealthy.json()["error"]
        (data / "unhealthy").unlink()
        assert server.client.get(READINESS_PATH).status_code == 200
        (data / "broken").touch()
        broken = server.client.get(READINESS_PATH)
        assert broken.status_code == 503 and "is_healthy" in broken.json()["error"]
        assert "7a1e" not in broken.text  # the exception stays in the log
        (data / "broken").unlink()
        assert server.client.get(READINESS_PATH).status_code == 200
    log = server.log()
    assert "is_healthy() raised" in log and "RuntimeError: health probe broke 7a1e" in log


CONCURRENCY = GATE_HELPER + """
import asyncio
import threading

_lock = threading.Lock()
_state = {"now": 0, "max": 0, "entered": 0}


class Model:
    def __init__(self, data_dir):
        self.data_dir = data_dir

    def predict(self, model_input):
        if model_input == "report":
            return _state["max"]
        self.enter()
        try:
            wait_for_gate(self.data_dir / "gate")
        finally:
            self.leave()
        return "done"

    def enter(self):
        with _lock:
            _state["now"] += 1
            _state["entered"] += 1
            _state["max"] = max(_state["max"], _state["now"])
            (self.data_dir / f"entered-{_state['entered']}").touch()

    def leave(self):
        with _lock:
            _state["now"] -= 1


class AsyncModel(Model):
    async def predict(self, model_input):
        if model_input == "report":
            return _state["max"]
        self.enter()
        try:
            while not (self.data_dir / "gate").exists():
                await asyncio.sleep(0.01)
        finally:
            self.leave()
        return "done"
"""


def _most_overlapping_predicts(server: ModelServer, concurrency: int, requests: int = 5) -> int:
    """Send `requests` predicts that block inside the model; return the most that ran at once."""
    data = server.model_dir / "data"
    statuses = []
    threads = [threading.Thread(target=lambda: statuses.append(server.predict("work").status_code)) for _ in range(requests)]
    for thread in threads:
        thread.start()
    try:
        # Every request has reached the server and `concurrency` of them are inside predict:
        # the others are now waiting for a slot, or (if the bound were broken) inside too.
        wait_for(
            lambda: len(list(data.glob("entered-*"))) >= concurrency and server.metric(IN_FLIGHT_PREDICTS) == requests,
            f"{concurrency} predicts to enter the model with {requests} in flight",
        )
    finally:
        (data / "gate").touch()
        for thread in threads:
            thread.join()
    assert statuses == [200] * requests
    return server.predict("report").json()


def test_predict_concurrency_1_serialises_sync_predicts(tmp_path):
    config = "runtime:\n  predict_concurrency: 1\n"
    with start_ready(tmp_path / "one", CONCURRENCY, config, files={"data/.keep": ""}) as server:
        assert _most_overlapping_predicts(server, concurrency=1) == 1


def test_predict_concurrency_2_allows_exactly_two_async_predicts(tmp_path):
    config = "model_class_name: AsyncModel\nruntime:\n  predict_concurrency: 2\n"
    with start_ready(tmp_path / "two", CONCURRENCY, config, files={"data/.keep": ""}) as server:
        assert _most_overlapping_predicts(server, concurrency=2) == 2


STREAM_HOLDS_SLOT = GATE_HELPER + """
_open = {"streams": 0}


class Model:
    def __init__(self, data_dir):
        self.gate = data_dir / "gate"

    def predict(self, model_input):
        if model_input == "stream":
            return self.chunks()
        return {"streams_open_when_called": _open["streams"]}

    def chunks(self):
        _open["streams"] += 1
        try:
            yield "first\\n"
            wait_for_gate(self.gate)
            yield "last\\n"
        finally:
            _open["streams"] -= 1
"""


def test_a_streaming_predict_holds_its_concurrency_slot_until_the_stream_ends(tmp_path):
    config = "runtime:\n  predict_concurrency: 1\n"
    with start_ready(tmp_path / "m", STREAM_HOLDS_SLOT, config, files={"data/.keep": ""}) as server:
        other: dict = {}
        with server.client.stream("POST", PREDICT_PATH, json="stream") as response:
            chunks = response.iter_raw()
            assert next(chunks) == b"first\n"
            waiting = threading.Thread(target=lambda: other.update(server.predict("plain").json()))
            waiting.start()
            try:
                wait_for(lambda: server.metric(IN_FLIGHT_PREDICTS) == 2, "the second predict to reach the server")
            finally:
                (server.model_dir / "data" / "gate").touch()
            rest = b"".join(chunks)
        waiting.join()
    assert rest == b"last\n"
    # The plain predict only ran once the stream had finished with its slot.
    assert other == {"streams_open_when_called": 0}
