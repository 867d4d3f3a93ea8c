"""`Accept: application/json` on a streaming endpoint: the whole stream as one JSON answer (server/gathering.py)."""

from __future__ import annotations

import json

import msgpack
import pytest

from test_server_harness import start_ready
from truss_cli.server.protocol import EXPOSE_ERRORS_ENV, PREDICT_PATH

GATHERED = {"accept": "application/json"}

STREAMS = """
import asyncio
import os
import time


class Model:
    def predict(self, model_input):
        kind = model_input.get("kind")
        if kind == "text":
            return (word for word in ["hello ", "streaming ", "world"])
        if kind == "async":
            return self.async_words()
        if kind == "split_utf8":
            return (part for part in [b"caf\\xc3", b"\\xa9 \\xe2\\x98", b"\\x95"])
        if kind == "objects":
            return ({"i": i} for i in range(3))
        if kind == "not_utf8":
            return (part for part in [b"\\xff\\xfe"])
        if kind == "fail_later":
            return self.fail_later()
        if kind == "pause":
            return self.pause(model_input["gate"])
        return {"plain": True}

    async def async_words(self):
        for word in ["one ", "two"]:
            await asyncio.sleep(0)
            yield word

    def fail_later(self):
        yield "partial"
        raise RuntimeError("stream broke")

    def pause(self, gate):
        yield "first"
        deadline = time.monotonic() + 30
        while not os.path.exists(gate) and time.monotonic() < deadline:
            time.sleep(0.01)
        yield "too late"

    def chat_completions(self, model_input):
        yield "data: a\\n\\n"
        yield "data: b\\n\\n"
"""


@pytest.fixture(scope="module")
def streams(tmp_path_factory):
    config = "runtime:\n  streaming_read_timeout: 1\n"
    env = {EXPOSE_ERRORS_ENV: "1"}
    with start_ready(tmp_path_factory.mktemp("gathering") / "m", STREAMS, config, env=env) as server:
        yield server


@pytest.mark.parametrize("kind,text", [("text", "hello streaming world"), ("async", "one two")])
def test_accept_json_gathers_a_stream_into_one_json_string(streams, kind, text):
    response = streams.predict({"kind": kind}, headers=GATHERED)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert "transfer-encoding" not in response.headers  # one body, not chunks
    assert response.json() == text


def test_bytes_chunks_are_joined_before_decoding_so_a_split_character_survives(streams):
    response = streams.predict({"kind": "split_utf8"}, headers=GATHERED)
    assert response.json() == "café ☕"


def test_object_chunks_are_gathered_as_the_json_lines_the_stream_would_carry(streams):
    response = streams.predict({"kind": "objects"}, headers=GATHERED)
    assert [json.loads(line) for line in response.json().splitlines()] == [{"i": 0}, {"i": 1}, {"i": 2}]


@pytest.mark.parametrize(
    "headers",
    [
        {},  # httpx sends Accept: */*
        {"accept": "application/json, text/plain"},  # only the exact value gathers, as in Truss
        {"accept": "application/json", "user-agent": "OpenAI/Python 1.40.0"},  # the SDK reads a stream
    ],
    ids=["no-accept-json", "accept-list", "openai-sdk"],
)
def test_other_requests_still_stream(streams, headers):
    response = streams.predict({"kind": "text"}, headers=headers)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert response.text == "hello streaming world"


def test_openai_style_routes_are_gathered_too(streams):
    response = streams.client.post("/v1/chat/completions", json={}, headers=GATHERED)
    assert response.json() == "data: a\n\ndata: b\n\n"


def test_a_msgpack_request_gets_the_gathered_text_as_msgpack(streams):
    body = msgpack.packb({"kind": "text"})
    headers = {**GATHERED, "content-type": "application/octet-stream"}
    response = streams.client.post(PREDICT_PATH, content=body, headers=headers)
    assert response.headers["content-type"] == "application/octet-stream"
    assert msgpack.unpackb(response.content) == "hello streaming world"


def test_a_plain_answer_is_unchanged_by_accept_json(streams):
    assert streams.predict({"kind": "plain"}, headers=GATHERED).json() == {"plain": True}


def test_a_failure_mid_stream_is_a_proper_500_since_nothing_was_sent(streams):
    response = streams.predict({"kind": "fail_later"}, headers=GATHERED)
    assert response.status_code == 500
    assert response.json()["error"].startswith("`predict` raised RuntimeError: stream broke")
    assert any(
        "raised RuntimeError: stream broke" in line and "after 1 chunk, gathered for Accept: application/json" in line
        for line in streams.log_lines()
    )
    assert streams.predict({"kind": "text"}, headers=GATHERED).json() == "hello streaming world"  # carries on


def test_bytes_that_are_not_utf8_are_a_500_that_says_so(streams):
    response = streams.predict({"kind": "not_utf8"}, headers=GATHERED)
    assert response.status_code == 500
    assert "not UTF-8 text" in response.json()["error"]
    assert "not UTF-8 text" in streams.log()


def test_streaming_read_timeout_still_bounds_each_chunk(streams, tmp_path):
    gate = tmp_path / "gate"
    try:
        response = streams.predict({"kind": "pause", "gate": str(gate)}, headers=GATHERED)
    finally:
        gate.touch()  # lets the paused generator finish
    assert response.status_code == 504
    assert "runtime.streaming_read_timeout (1 s)" in response.json()["error"]
