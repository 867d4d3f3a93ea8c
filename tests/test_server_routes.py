"""Truss's model routes besides predict, and /loaded, against a real server on a real port."""

from __future__ import annotations

import json

import httpx
import pytest

from test_server_harness import ModelServer, start_ready, wait_for, write_model_dir
from truss_cli.server.protocol import ENDPOINT_PATHS, LOADED_PATH, PREDICT_PATH, READINESS_PATH

CHAT, COMPLETIONS, EMBEDDINGS, MESSAGES, RESPONSES = (
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/embeddings",
    "/v1/messages",
    "/v1/responses",
)

ENDPOINTS = """
import asyncio
from typing import List

from fastapi import Request
from pydantic import BaseModel


class EmbeddingRequest(BaseModel):
    input: List[str]


class Embeddings(BaseModel):
    data: List[List[float]]


class Model:
    def preprocess(self, model_input):
        return {"preprocessed": True, **model_input}

    def predict(self, model_input):
        return model_input

    def postprocess(self, result):
        return {"postprocessed": True, **result}

    def chat_completions(self, model_input, request: Request):  # sync, with the request
        return {"route": "chat_completions", "got": model_input, "path": request.url.path}

    async def completions(self, model_input):  # async
        await asyncio.sleep(0)
        if model_input.get("stream"):
            return self._tokens(model_input["prompt"])  # a plain method returning a generator
        return {"route": "completions", "got": model_input}

    async def _tokens(self, prompt):
        for word in prompt.split():
            yield f"data: {word}\\n\\n"

    def embeddings(self, request: EmbeddingRequest) -> Embeddings:  # pydantic in and out
        return Embeddings(data=[[float(len(text))] for text in request.input])

    def messages(self, model_input):  # a sync generator: streamed
        for i in range(model_input["n"]):
            yield {"i": i}

    async def responses(self, model_input):  # an async generator: streamed
        for word in ["one", "two"]:
            yield word + "\\n"
"""


@pytest.fixture(scope="module")
def endpoints(tmp_path_factory):
    with start_ready(tmp_path_factory.mktemp("endpoints") / "m", ENDPOINTS) as server:
        yield server


def test_protocol_names_truss_paths():
    assert ENDPOINT_PATHS == {
        CHAT: "chat_completions",
        COMPLETIONS: "completions",
        EMBEDDINGS: "embeddings",
        MESSAGES: "messages",
        RESPONSES: "responses",
    }


def test_sync_endpoint_gets_input_and_request_without_preprocess_or_postprocess(endpoints):
    response = endpoints.client.post(CHAT, json={"messages": [{"role": "user", "content": "hi"}]})
    assert response.status_code == 200
    # As in Truss: preprocess and postprocess belong to predict only.
    assert response.json() == {
        "route": "chat_completions",
        "got": {"messages": [{"role": "user", "content": "hi"}]},
        "path": CHAT,
    }
    assert endpoints.predict({"x": 1}).json() == {"postprocessed": True, "preprocessed": True, "x": 1}


def test_async_endpoint(endpoints):
    response = endpoints.client.post(COMPLETIONS, json={"prompt": "a b"})
    assert response.status_code == 200
    assert response.json() == {"route": "completions", "got": {"prompt": "a b"}}


def test_endpoint_returning_a_generator_streams_it(endpoints):
    response = endpoints.client.post(COMPLETIONS, json={"prompt": "hello streaming world", "stream": True})
    assert response.status_code == 200
    assert response.text == "data: hello\n\ndata: streaming\n\ndata: world\n\n"


def test_sync_generator_endpoint_streams_json_lines(endpoints):
    response = endpoints.client.post(MESSAGES, json={"n": 3})
    assert response.headers["content-type"] == "application/x-ndjson"
    assert [json.loads(line) for line in response.text.splitlines()] == [{"i": 0}, {"i": 1}, {"i": 2}]


def test_async_generator_endpoint_streams_chunk_by_chunk(endpoints):
    with endpoints.client.stream("POST", RESPONSES, json={}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        assert b"".join(response.iter_raw()) == b"one\ntwo\n"


def test_pydantic_endpoint_validates_its_own_input_and_output(endpoints):
    ok = endpoints.client.post(EMBEDDINGS, json={"input": ["ab", "abc"]})
    assert ok.status_code == 200 and ok.json() == {"data": [[2.0], [3.0]]}
    bad = endpoints.client.post(EMBEDDINGS, json={"inputs": ["ab"]})
    assert bad.status_code == 422
    assert "input" in bad.json()["error"]


def test_endpoints_take_only_post(endpoints):
    response = endpoints.client.get(CHAT)
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"


def test_endpoint_requests_are_counted_under_their_own_name(endpoints):
    before = endpoints.metric('truss_requests_total{route="embeddings",status="200"}')
    endpoints.client.post(EMBEDDINGS, json={"input": ["x"]})
    assert endpoints.metric('truss_requests_total{route="embeddings",status="200"}') == before + 1


ONLY_PREDICT = """
class Model:
    def predict(self, model_input):
        return model_input
"""


@pytest.fixture(scope="module")
def only_predict(tmp_path_factory):
    with start_ready(tmp_path_factory.mktemp("only-predict") / "m", ONLY_PREDICT) as server:
        yield server


@pytest.mark.parametrize("path,method", sorted(ENDPOINT_PATHS.items()))
def test_an_endpoint_the_model_does_not_define_is_a_404_naming_the_method(only_predict, path, method):
    response = only_predict.client.post(path, json={})
    assert response.status_code == 404
    assert response.json() == {"error": f"the model does not define `{method}`, so {path} is not served"}


def test_predict_alias_paths_still_reach_predict(only_predict):
    assert only_predict.client.post(PREDICT_PATH, json=[1]).json() == [1]
    assert only_predict.client.post("/v1/models/other:predict_binary", json=[2]).json() == [2]


UNHEALTHY = """
class Model:
    def is_healthy(self):
        return False

    def predict(self, model_input):
        return model_input
"""


def test_loaded_answers_once_load_finished_whatever_is_healthy_says(tmp_path):
    with ModelServer(write_model_dir(tmp_path / "unhealthy", UNHEALTHY)) as server:
        wait_for(lambda: server.alive() and _answers(server, LOADED_PATH), "the model to load", timeout=60)
        loaded = server.client.get(LOADED_PATH)
        ready = server.client.get(READINESS_PATH)
        other_name = server.client.get("/v1/models/anything/loaded")
    assert loaded.status_code == 200 and loaded.json() == {}
    assert other_name.status_code == 200
    assert ready.status_code == 503  # readiness asks is_healthy(); loaded does not


def _answers(server: ModelServer, path: str) -> bool:
    try:
        return server.client.get(path).status_code == 200
    except httpx.HTTPError:
        return False


SLOW_LOAD = """
import os
import time


class Model:
    def load(self):
        deadline = time.monotonic() + 60
        while not os.path.exists(os.environ["GATE"]) and time.monotonic() < deadline:
            time.sleep(0.01)

    def predict(self, model_input):
        return model_input
"""


def test_loaded_is_503_while_load_runs(tmp_path):
    gate = tmp_path / "gate"
    with ModelServer(write_model_dir(tmp_path / "slow", SLOW_LOAD), env={"GATE": str(gate)}) as server:
        try:
            server.wait_live()
            response = server.client.get(LOADED_PATH)
            predict = server.predict({})
        finally:
            gate.touch()
        assert response.status_code == 503
        assert "load() is still running" in response.json()["error"]
        assert predict.status_code == 503
        server.wait_ready()
        assert server.client.get(LOADED_PATH).status_code == 200
