"""/v1/websocket against a real server, with a real websocket client (the `websockets` package)."""

from __future__ import annotations

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from test_server_harness import ModelServer, start_ready, wait_for, write_model_dir
from truss_cli.server.protocol import PREDICT_PATH, WEBSOCKET_PATH

ECHO = """
from fastapi import WebSocket


class Model:
    async def websocket(self, ws: WebSocket):
        while True:
            text = await ws.receive_text()
            if text == "bye":
                return  # the server closes the connection normally
            if text == "crash":
                raise ValueError("cannot handle crash")
            await ws.send_text(f"echo: {text}")
"""


def ws_url(server: ModelServer) -> str:
    return server.url.replace("http://", "ws://") + WEBSOCKET_PATH


@pytest.fixture(scope="module")
def echo(tmp_path_factory):
    with start_ready(tmp_path_factory.mktemp("ws-echo") / "m", ECHO) as server:
        yield server


def test_websocket_echoes_and_closes_normally_when_the_method_returns(echo):
    with connect(ws_url(echo)) as ws:
        ws.send("hello")
        assert ws.recv(timeout=30) == "echo: hello"
        ws.send("again")
        assert ws.recv(timeout=30) == "echo: again"
        ws.send("bye")
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=30)
    assert ws.close_code == 1000


def test_a_websocket_that_raises_closes_with_1011_and_logs_the_user_traceback(echo):
    with connect(ws_url(echo)) as ws:
        ws.send("crash")
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=30)
    assert ws.close_code == 1011
    # Without TRUSS_EXPOSE_ERRORS the reason keeps the message out.
    assert ws.close_reason == "`websocket` raised an exception; the details are in the server log"
    wait_for(lambda: "cannot handle crash" in echo.log(), "the error in the log")
    log = echo.log()
    assert "`websocket` raised ValueError: cannot handle crash (model/model.py, line 12)" in log
    traceback = log[log.index("Traceback") :]
    assert 'model/model.py", line 12, in websocket' in traceback
    assert "truss_cli" not in traceback.split("ValueError: cannot handle crash")[0]  # no server frames


def test_a_websocket_model_has_no_predict_route(echo):
    response = echo.client.post(PREDICT_PATH, json={})
    assert response.status_code == 404
    assert "does not define `predict`" in response.json()["error"]


def test_exposed_errors_give_the_exception_as_close_reason(tmp_path):
    with start_ready(tmp_path / "exposed", ECHO, env={"TRUSS_EXPOSE_ERRORS": "1"}) as server:
        with connect(ws_url(server)) as ws:
            ws.send("crash")
            with pytest.raises(ConnectionClosed):
                ws.recv(timeout=30)
    assert ws.close_code == 1011
    assert ws.close_reason == "`websocket` raised ValueError: cannot handle crash (model/model.py, line 12)"


NO_WEBSOCKET = """
class Model:
    def predict(self, model_input):
        return model_input
"""


def test_a_model_without_websocket_accepts_then_closes_with_1003(tmp_path):
    with start_ready(tmp_path / "plain", NO_WEBSOCKET) as server:
        with connect(ws_url(server)) as ws:
            with pytest.raises(ConnectionClosed):
                ws.recv(timeout=30)
    assert ws.close_code == 1003
    assert ws.close_reason == "the model does not define `websocket`, so /v1/websocket is not served"


SLOW_LOAD = """
import os
import time

from fastapi import WebSocket


class Model:
    def load(self):
        deadline = time.monotonic() + 60
        while not os.path.exists(os.environ["GATE"]) and time.monotonic() < deadline:
            time.sleep(0.01)

    async def websocket(self, ws: WebSocket):
        await ws.send_text("ready")
"""


def test_a_websocket_before_the_model_is_ready_is_refused_with_503(tmp_path):
    gate = tmp_path / "gate"
    with ModelServer(write_model_dir(tmp_path / "slow", SLOW_LOAD), env={"GATE": str(gate)}) as server:
        try:
            server.wait_live()
            with pytest.raises(InvalidStatus) as refused:
                connect(ws_url(server))
        finally:
            gate.touch()
        assert refused.value.response.status_code == 503
        assert b"not ready yet" in refused.value.response.body
        server.wait_ready()
        with connect(ws_url(server)) as ws:
            assert ws.recv(timeout=30) == "ready"


BOTH = """
from fastapi import WebSocket


class Model:
    def predict(self, model_input):
        return model_input

    async def websocket(self, ws: WebSocket):
        pass
"""


def test_a_model_with_both_websocket_and_predict_fails_to_load_saying_why(tmp_path):
    with ModelServer(write_model_dir(tmp_path / "both", BOTH)) as server:
        assert server.wait_exit() == 1
    assert "defines `websocket` and also `predict`" in server.log()
