"""What a failing model shows: the server log and the client's error body, for each way to fail."""

from __future__ import annotations

import httpx
import pytest

from test_server_harness import start_ready
from truss_cli.server.protocol import EXPOSE_ERRORS_ENV

FAILING = """
import asyncio


class Model:
    def preprocess(self, model_input):
        if model_input.get("fail") == "preprocess":
            raise KeyError("no such feature")
        return model_input

    async def predict(self, model_input):
        await asyncio.sleep(0)
        kind = model_input.get("fail")
        if kind == "predict":
            return self.check(model_input)
        if kind == "stream":
            return self.chunks()
        if kind == "unencodable":
            return {"value": object()}
        return model_input

    def check(self, model_input):
        raise ValueError("bad input")

    def chunks(self):
        yield "one\\n"
        yield "two\\n"
        raise RuntimeError("stream broke")

    def embeddings(self, model_input):
        raise TypeError("expected a list")
"""
# The lines of the `raise` statements above (the string starts with a newline).
PREPROCESS_LINE, CHECK_LINE, STREAM_LINE, EMBEDDINGS_LINE = 8, 23, 28, 31


@pytest.fixture(scope="module")
def failing(tmp_path_factory):
    with start_ready(tmp_path_factory.mktemp("failing") / "m", FAILING) as server:
        yield server


@pytest.fixture(scope="module")
def exposed(tmp_path_factory):
    with start_ready(tmp_path_factory.mktemp("exposed") / "m", FAILING, env={EXPOSE_ERRORS_ENV: "1"}) as server:
        yield server


def traceback_after(log: str, line: str) -> str:
    """The traceback logged right after `line`."""
    rest = log[log.index(line) + len(line) :]
    return rest[: rest.index("\n", rest.index("Error: ")) + 1]


def test_a_raising_predict_logs_one_line_and_the_traceback_of_the_users_code_only(failing):
    response = failing.predict({"fail": "predict"})
    assert response.status_code == 500
    line = f"`predict` raised ValueError: bad input (model/model.py, line {CHECK_LINE})"
    log = failing.log()
    assert line in log
    traceback = traceback_after(log, line)
    assert traceback.startswith("\nTraceback (most recent call last):\n")
    frames = [row for row in traceback.splitlines() if row.strip().startswith("File ")]
    # From the model's first frame on: predict, then the helper that raised. No server,
    # asyncio or thread-pool frames.
    assert [frame.rsplit(", in ", 1)[1] for frame in frames] == ["predict", "check"]
    assert all("model/model.py" in frame for frame in frames)
    assert traceback.rstrip().endswith("ValueError: bad input")


def test_without_exposed_errors_the_body_names_the_step_and_points_to_the_log(failing):
    response = failing.predict({"fail": "predict"})
    assert response.json() == {"error": "`predict` raised an exception; the details are in the server log"}
    assert "bad input" not in response.text and "Internal Server Error" not in response.text


def test_with_exposed_errors_the_body_says_what_was_raised_and_where(exposed):
    response = exposed.predict({"fail": "predict"})
    assert response.status_code == 500
    assert response.json() == {"error": f"`predict` raised ValueError: bad input (model/model.py, line {CHECK_LINE})"}


def test_the_failing_step_is_named(exposed):
    response = exposed.predict({"fail": "preprocess"})
    assert response.status_code == 500
    assert response.json() == {
        "error": f"`preprocess` raised KeyError: 'no such feature' (model/model.py, line {PREPROCESS_LINE})"
    }
    other_route = exposed.client.post("/v1/embeddings", json=[1])
    assert other_route.status_code == 500
    assert other_route.json() == {
        "error": f"`embeddings` raised TypeError: expected a list (model/model.py, line {EMBEDDINGS_LINE})"
    }


def test_an_unencodable_output_is_explained_when_errors_are_exposed(failing, exposed):
    hidden = failing.predict({"fail": "unencodable"})
    shown = exposed.predict({"fail": "unencodable"})
    assert hidden.status_code == shown.status_code == 500
    assert hidden.json() == {"error": "`predict` returned an output the server cannot send; the details are in the server log"}
    assert shown.json() == {
        "error": "`predict` returned an output that cannot be encoded as JSON: cannot encode a value of type builtins.object"
    }


def test_a_stream_failing_midway_is_one_line_from_the_server_and_none_from_uvicorn(failing):
    received = []
    with pytest.raises(httpx.RemoteProtocolError):
        with failing.client.stream("POST", "/v1/models/model:predict", json={"fail": "stream"}) as response:
            assert response.status_code == 200
            for chunk in response.iter_raw():
                received.append(chunk)
    assert b"".join(received) == b"one\ntwo\n"
    log = failing.log()
    line = (
        f"`predict` raised RuntimeError: stream broke (model/model.py, line {STREAM_LINE}) "
        "after 2 chunks; the response was cut off"
    )
    assert line in log
    assert traceback_after(log, line).rstrip().endswith("RuntimeError: stream broke")
    assert "ASGI callable returned without completing response" not in log
    assert "Exception in ASGI application" not in log
    assert failing.predict({"ok": 1}).json() == {"ok": 1}  # the server carries on
