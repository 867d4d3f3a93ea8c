"""Loading, readiness, health and concurrency of a real model server process."""

from __future__ import annotations

import threading

import httpx

from test_server_harness import READY_PATH, ModelServer, start_ready, write_model_dir

FAILING_LOAD = """
class Model:
    def load(self):
        raise RuntimeError("weights missing 41d7")

    def predict(self, model_input):
        return model_input
"""


def test_load_failure_logs_the_traceback_never_gets_ready_and_exits_non_zero(tmp_path):
    server = ModelServer(write_model_dir(tmp_path / "m", FAILING_LOAD))
    statuses = set()
    while server.alive():
        try:
            statuses.add(httpx.get(server.url + READY_PATH, timeout=2).status_code)
        except httpx.HTTPError:
            pass
    assert server.wait_exit() != 0
    assert 200 not in statuses
    log = server.log()
    assert "Traceback" in log and "RuntimeError: weights missing 41d7" in log


def test_missing_model_class_exits_non_zero_naming_it(tmp_path):
    server = ModelServer(write_model_dir(tmp_path / "m", "class Other:\n    pass\n", "model_class_name: Model\n"))
    assert server.wait_exit() != 0
    assert "no class named 'Model'" in server.log()


SLOW_LOAD = """
import os
import time


class Model:
    def __init__(self, data_dir):
        self.gate = data_dir / "loaded"

    def load(self):
        while not self.gate.exists():
            time.sleep(0.01)

    def predict(self, model_input):
        return "ok"
"""


def test_server_is_live_at_once_and_ready_only_after_load(tmp_path):
    model_dir = write_model_dir(tmp_path / "m", SLOW_LOAD, files={"data/.keep": ""})
    server = ModelServer(model_dir)
    try:
        server.wait_live()
        assert server.client.get(READY_PATH).status_code == 503
        not_ready = server.predict({})
        assert not_ready.status_code == 503 and "not ready" in not_ready.json()["error"]
        assert server.client.get("/v1/models/model/schema").status_code == 503
        (model_dir / "data" / "loaded").touch()
        server.wait_ready()
        assert server.predict({}).json() == "ok"
    finally:
        server.stop()


HEALTH = """
class Model:
    def __init__(self, data_dir):
        self.flag = data_dir / "unhealthy"

    def is_healthy(self):
        return not self.flag.exists()

    def predict(self, model_input):
        return model_input
"""


def test_is_healthy_false_makes_readiness_503(tmp_path):
    model_dir = write_model_dir(tmp_path / "m", HEALTH, files={"data/.keep": ""})
    server = ModelServer(model_dir).wait_ready()
    try:
        (model_dir / "data" / "unhealthy").touch()
        response = server.client.get(READY_PATH)
        assert response.status_code == 503 and "is_healthy" in response.json()["error"]
        (model_dir / "data" / "unhealthy").unlink()
        assert server.client.get(READY_PATH).status_code == 200
    finally:
        server.stop()


CONCURRENCY = """
import asyncio
import threading
import time

_lock = threading.Lock()
_state = {"now": 0, "max": 0}


def _enter():
    with _lock:
        _state["now"] += 1
        _state["max"] = max(_state["max"], _state["now"])


def _leave():
    with _lock:
        _state["now"] -= 1


class Model:
    def predict(self, model_input):
        if model_input == "report":
            return _state["max"]
        _enter()
        time.sleep(0.2)
        _leave()
        return "done"


class AsyncModel:
    async def predict(self, model_input):
        if model_input == "report":
            return _state["max"]
        _enter()
        await asyncio.sleep(0.2)
        _leave()
        return "done"
"""


def _most_overlapping_predicts(server: ModelServer, requests: int = 5) -> int:
    threads = [threading.Thread(target=server.predict, args=("work",)) for _ in range(requests)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return server.predict("report").json()


def test_predict_concurrency_1_serialises_sync_predicts(tmp_path):
    server = start_ready(tmp_path / "one", CONCURRENCY, "runtime:\n  predict_concurrency: 1\n")
    try:
        assert _most_overlapping_predicts(server) == 1
    finally:
        server.stop()


def test_predict_concurrency_2_allows_exactly_two_async_predicts(tmp_path):
    config = "model_class_name: AsyncModel\nruntime:\n  predict_concurrency: 2\n"
    server = start_ready(tmp_path / "two", CONCURRENCY, config)
    try:
        assert _most_overlapping_predicts(server) == 2
    finally:
        server.stop()
