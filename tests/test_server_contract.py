"""The Model contract against a real server on a real port: each form a model may take."""

from __future__ import annotations

import json
import threading

import httpx
import msgpack
import pytest

from test_server_harness import start_ready
from truss_cli.server.protocol import METRICS_PATH, PREDICT_PATH, READINESS_PATH, SCHEMA_PATH

ECHO = """
class Model:
    def predict(self, model_input):
        return model_input
"""


@pytest.fixture(scope="module")
def echo(tmp_path_factory):
    with start_ready(tmp_path_factory.mktemp("echo") / "m", ECHO) as server:
        yield server


def metric(text: str, line_prefix: str) -> float:
    for line in text.splitlines():
        if line.startswith(line_prefix + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_sync_predict_echoes_json(echo):
    response = echo.predict({"inputs": [1, 2, 3], "text": "héllo"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"inputs": [1, 2, 3], "text": "héllo"}


def test_liveness_and_truss_alias_paths(echo):
    assert echo.client.get("/").status_code == 200
    assert echo.client.post("/v1/models/anything:predict", json=[1]).json() == [1]
    assert echo.client.post("/invocations", json={"a": 1}).json() == {"a": 1}


def test_msgpack_in_and_out(echo):
    body = msgpack.packb({"data": b"\x00\x01", "n": [1.5, 2]}, use_bin_type=True)
    response = echo.client.post(PREDICT_PATH, content=body, headers={"content-type": "application/octet-stream"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/octet-stream"
    assert msgpack.unpackb(response.content, raw=False) == {"data": b"\x00\x01", "n": [1.5, 2]}


def test_malformed_json_is_a_400_with_the_parse_error(echo):
    response = echo.client.post(PREDICT_PATH, content=b'{"a": ', headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert "invalid JSON" in response.json()["error"]
    assert "line 1" in response.json()["error"]


def test_malformed_msgpack_is_a_400(echo):
    response = echo.client.post(PREDICT_PATH, content=b"\xc1", headers={"content-type": "application/octet-stream"})
    assert response.status_code == 400
    assert "msgpack" in response.json()["error"]


def test_schema_is_404_without_pydantic_types(echo):
    assert echo.client.get(SCHEMA_PATH).status_code == 404


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
@pytest.mark.parametrize("path", [PREDICT_PATH, "/v1/models/other:predict", "/invocations"])
def test_predict_paths_take_only_post(echo, method, path):
    response = echo.client.request(method, path)
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert "POST" in response.json()["error"]
    assert echo.client.get(READINESS_PATH).status_code == 200  # the readiness route is unaffected


def test_metrics_count_requests_by_status(echo):
    before = echo.client.get(METRICS_PATH).text
    ok_before = metric(before, 'truss_requests_total{route="predict",status="200"}')
    bad_before = metric(before, 'truss_requests_total{route="predict",status="400"}')
    for _ in range(3):
        assert echo.predict({"x": 1}).status_code == 200
    assert echo.client.post(PREDICT_PATH, content=b"nope").status_code == 400
    after = echo.client.get(METRICS_PATH)
    assert after.headers["content-type"].startswith("text/plain")
    assert metric(after.text, 'truss_requests_total{route="predict",status="200"}') == ok_before + 3
    assert metric(after.text, 'truss_requests_total{route="predict",status="400"}') == bad_before + 1
    count = metric(after.text, 'truss_request_duration_seconds_count{route="predict"}')
    assert count == metric(after.text, 'truss_request_duration_seconds_bucket{route="predict",le="+Inf"}')
    assert count >= 4
    assert metric(after.text, 'truss_requests_in_flight{route="predict"}') == 0
    assert metric(after.text, "truss_model_ready") == 1


STEPS = """
import asyncio
import threading


class Model:
    def preprocess(self, model_input):
        return {"steps": ["pre"], "threads": {"pre": threading.current_thread().name}, "x": model_input["x"]}

    async def predict(self, data):
        await asyncio.sleep(0)
        data["steps"].append("predict")
        data["threads"]["predict"] = threading.current_thread().name
        data["x"] *= 2
        return data

    def postprocess(self, data):
        data["steps"].append("post")
        data["threads"]["post"] = threading.current_thread().name
        return data
"""


def test_preprocess_predict_postprocess_sync_off_the_loop_async_on_it(tmp_path):
    with start_ready(tmp_path / "steps", STEPS) as server:
        result = server.predict({"x": 21}).json()
    assert result["steps"] == ["pre", "predict", "post"]
    assert result["x"] == 42
    # Sync methods run in worker threads so they never block the event loop; async ones on it.
    assert result["threads"]["predict"] == "MainThread"
    assert result["threads"]["pre"] != "MainThread" and result["threads"]["post"] != "MainThread"


STREAMING = """
import asyncio
import os
import time


def _gate_open(path, seconds=20):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if os.path.exists(path):
            return True
        time.sleep(0.01)
    return False


class Model:
    def predict(self, model_input):
        if model_input.get("kind") == "sync":
            return self.sync_chunks(model_input)
        if model_input.get("kind") == "async":
            return self.async_chunks(model_input)
        if model_input.get("kind") == "json":
            return ({"i": i} for i in range(3))
        if model_input.get("kind") == "fail_first":
            return self.fail_first()
        return self.fail_later()

    def sync_chunks(self, model_input):
        yield "first\\n"
        # The test opens the gate only after it has received "first": a server that
        # buffered the stream would make this wait run out.
        yield "gate opened\\n" if _gate_open(model_input["gate"]) else "gate timed out\\n"

    async def async_chunks(self, model_input):
        yield b"first\\n"
        for _ in range(2000):
            if os.path.exists(model_input["gate"]):
                yield b"gate opened\\n"
                return
            await asyncio.sleep(0.01)
        yield b"gate timed out\\n"

    def fail_first(self):
        raise RuntimeError("no chunk at all")
        yield "unreachable"

    def fail_later(self):
        yield "partial\\n"
        raise RuntimeError("stream broke")
"""


@pytest.fixture(scope="module")
def streaming(tmp_path_factory):
    with start_ready(tmp_path_factory.mktemp("streaming") / "m", STREAMING) as server:
        yield server


@pytest.mark.parametrize("kind,content_type", [("sync", "text/plain"), ("async", "application/octet-stream")])
def test_generators_stream_chunk_by_chunk(streaming, tmp_path, kind, content_type):
    gate = tmp_path / f"gate-{kind}"
    received = []
    with streaming.client.stream("POST", PREDICT_PATH, json={"kind": kind, "gate": str(gate)}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith(content_type)
        for chunk in response.iter_raw():
            received.append(chunk)
            if b"first" in b"".join(received):
                gate.touch()
    assert b"".join(received) == b"first\ngate opened\n"


def test_generator_of_objects_streams_json_lines(streaming):
    response = streaming.predict({"kind": "json"})
    assert response.headers["content-type"] == "application/x-ndjson"
    assert [json.loads(line) for line in response.text.splitlines()] == [{"i": 0}, {"i": 1}, {"i": 2}]


def test_generator_failing_before_its_first_chunk_is_a_500(streaming):
    response = streaming.predict({"kind": "fail_first"})
    assert response.status_code == 500
    assert "no chunk at all" in streaming.log()


def test_generator_failing_midway_breaks_the_stream_instead_of_ending_it_cleanly(streaming):
    with pytest.raises(httpx.RemoteProtocolError):
        streaming.predict({"kind": "fail_later"})
    assert "stream broke" in streaming.log()
    assert streaming.predict({"kind": "json"}).status_code == 200  # the server carries on


REQUEST_PARAM = """
from __future__ import annotations  # string annotations must be recognised too

from fastapi import Request


class Model:
    async def preprocess(self, request: Request):
        return {"size": len(await request.body()), "agent": request.headers.get("x-client")}

    def predict(self, data, request: Request):
        data["path"] = request.url.path
        return data
"""


def test_request_parameter_receives_the_request(tmp_path):
    with start_ready(tmp_path / "request", REQUEST_PARAM) as server:
        response = server.client.post(PREDICT_PATH, content=b"not json at all", headers={"x-client": "pytest"})
    # The first step takes only the request, so the server leaves the body alone.
    assert response.status_code == 200
    assert response.json() == {"size": 15, "agent": "pytest", "path": PREDICT_PATH}


PYDANTIC = """
from typing import List

from pydantic import BaseModel, Field


class Request(BaseModel):  # a pydantic model that happens to share Starlette's class name
    text: str
    repeat: int = Field(1, ge=1)


class Words(BaseModel):
    words: List[str]


class Model:
    def predict(self, request: Request) -> Words:
        return Words(words=request.text.split() * request.repeat)
"""


@pytest.fixture(scope="module")
def typed(tmp_path_factory):
    with start_ready(tmp_path_factory.mktemp("pydantic") / "m", PYDANTIC) as server:
        yield server


def test_pydantic_input_is_validated_and_output_serialised(typed):
    response = typed.predict({"text": "a b", "repeat": 2})
    assert response.status_code == 200
    assert response.json() == {"words": ["a", "b", "a", "b"]}


def test_pydantic_validation_errors_name_the_fields(typed):
    missing = typed.predict({"repeat": 2})
    assert missing.status_code == 422
    assert "text" in missing.json()["error"]
    wrong = typed.predict({"text": "a", "repeat": 0})
    assert wrong.status_code == 422
    assert "repeat" in wrong.json()["error"]
    assert wrong.json()["detail"][0]["loc"] == ["repeat"]


def test_pydantic_model_with_malformed_json_is_a_400(typed):
    response = typed.client.post(PREDICT_PATH, content=b"{", headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert "invalid JSON" in response.json()["error"]


def test_pydantic_input_validated_from_msgpack(typed):
    headers = {"content-type": "application/octet-stream"}
    ok = typed.client.post(PREDICT_PATH, content=msgpack.packb({"text": "x y"}), headers=headers)
    assert msgpack.unpackb(ok.content) == {"words": ["x", "y"]}
    bad = typed.client.post(PREDICT_PATH, content=msgpack.packb({"txt": "x"}), headers=headers)
    assert bad.status_code == 422 and "text" in bad.json()["error"]


def test_schema_publishes_input_and_output(typed):
    schema = typed.client.get(SCHEMA_PATH).json()
    assert set(schema["input_schema"]["properties"]) == {"text", "repeat"}
    assert schema["input_schema"]["required"] == ["text"]
    assert set(schema["output_schema"]["properties"]) == {"words"}
    assert schema["supports_streaming"] is False


FAILING = """
from fastapi import HTTPException


class Model:
    def predict(self, model_input):
        if model_input == "http":
            raise HTTPException(status_code=409, detail="busy, try later")
        if model_input == "object":
            return object()
        raise ValueError("internal detail 8c1f")
"""


def test_model_exceptions_are_500_with_the_traceback_only_in_the_log(tmp_path):
    with start_ready(tmp_path / "failing", FAILING) as server:
        crash = server.predict("crash")
        conflict = server.predict("http")
        unencodable = server.predict("object")
    assert crash.status_code == 500
    assert "8c1f" not in crash.text and "Traceback" not in crash.text
    assert "error" in crash.json()
    log = server.log()
    assert "Traceback" in log and "ValueError: internal detail 8c1f" in log
    # An HTTPException raised on purpose keeps its status and message.
    assert conflict.status_code == 409 and conflict.json() == {"error": "busy, try later"}
    assert unencodable.status_code == 500
    assert "cannot encode a value of type builtins.object" in log


def test_overlapping_requests_are_all_answered(echo):
    results = []

    def call(i):
        results.append(echo.predict({"i": i}).json()["i"])

    threads = [threading.Thread(target=call, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == list(range(16))


TYPED_OUTPUT = """
from typing import List, Optional

from pydantic import BaseModel


class Words(BaseModel):
    words: List[str]
    count: int


class Model:
    def predict(self, model_input) -> Words:
        if model_input == "valid dict":
            return {"words": ["a", "b"], "count": 2}
        if model_input == "wrong type":
            return {"words": ["a"], "count": "many"}
        if model_input == "missing field":
            return {"words": ["a"]}
        return "not a Words at all"


class MaybeWords(Model):
    def predict(self, model_input) -> Optional[Words]:
        return None
"""


def test_pydantic_output_is_validated_against_the_return_annotation(tmp_path):
    with start_ready(tmp_path / "typed-output", TYPED_OUTPUT) as server:
        valid = server.predict("valid dict")
        wrong_type = server.predict("wrong type")
        missing = server.predict("missing field")
        not_a_dict = server.predict("text")
    assert valid.status_code == 200 and valid.json() == {"words": ["a", "b"], "count": 2}
    for response in (wrong_type, missing, not_a_dict):
        assert response.status_code == 500
        assert "count" not in response.text and "Words" not in response.text  # generic body
    log = server.log()
    assert "`predict` returned a dict that does not match its return annotation Words: count: Input should be a valid integer" in log
    assert "Words: count: Field required" in log
    assert "`predict` returned a str that does not match its return annotation Words" in log


def test_an_optional_pydantic_output_may_be_none(tmp_path):
    with start_ready(tmp_path / "maybe", TYPED_OUTPUT, "model_class_name: MaybeWords\n") as server:
        response = server.predict("anything")
    assert response.status_code == 200 and response.json() is None


SLOW_STREAMS = """
import asyncio
import os
import time


def wait_for_gate(path, seconds=60):
    deadline = time.monotonic() + seconds
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.01)


class Model:
    def predict(self, model_input):
        kind, gate = model_input["kind"], model_input.get("gate")
        if kind == "sync":
            return self.sync_pause(gate)
        if kind == "async":
            return self.async_pause(gate)
        if kind == "silent":
            return self.silent(gate)
        return "plain"

    def sync_pause(self, gate):
        yield "first\\n"
        wait_for_gate(gate)  # opened by the test once it has seen the stream cut off
        yield "too late\\n"

    async def async_pause(self, gate):
        yield "first\\n"
        for _ in range(6000):
            if os.path.exists(gate):
                break
            await asyncio.sleep(0.01)
        yield "too late\\n"

    def silent(self, gate):
        wait_for_gate(gate)
        yield "too late\\n"
"""


@pytest.fixture(scope="module")
def slow_streams(tmp_path_factory):
    config = "runtime:\n  predict_concurrency: 1\n  streaming_read_timeout: 1\n"
    with start_ready(tmp_path_factory.mktemp("slow-streams") / "m", SLOW_STREAMS, config) as server:
        yield server


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_stream_pausing_longer_than_streaming_read_timeout_is_cut_off(slow_streams, tmp_path, kind):
    gate = tmp_path / "gate"
    received = []
    with pytest.raises(httpx.RemoteProtocolError):
        with slow_streams.client.stream("POST", PREDICT_PATH, json={"kind": kind, "gate": str(gate)}) as response:
            assert response.status_code == 200
            for chunk in response.iter_raw():
                received.append(chunk)
    gate.touch()
    assert b"".join(received) == b"first\n"
    assert "runtime.streaming_read_timeout" in slow_streams.log()
    # The predict slot (predict_concurrency: 1) comes back once the paused generator stops.
    assert slow_streams.predict({"kind": "plain"}).json() == "plain"


def test_a_stream_silent_past_streaming_read_timeout_before_its_first_chunk_is_a_504(slow_streams, tmp_path):
    gate = tmp_path / "gate"
    try:
        response = slow_streams.predict({"kind": "silent", "gate": str(gate)})
    finally:
        gate.touch()
    assert response.status_code == 504
    assert "runtime.streaming_read_timeout (1 s)" in response.json()["error"]
    assert slow_streams.predict({"kind": "plain"}).json() == "plain"
