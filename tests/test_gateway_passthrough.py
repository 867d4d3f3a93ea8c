"""`/model-{id}/{target}/sync/...` with real clients: the OpenAI SDK (streaming too) and a websocket."""

from __future__ import annotations

import pytest
from openai import OpenAI
from websockets.exceptions import ConnectionClosedOK
from websockets.sync.client import connect

from gateway_support import RunningGateway
from test_server_harness import ModelServer, write_model_dir
from truss_cli.controlplane.gateway import Replica, RoutingTable

CHAT_MODEL = """
import json


class Model:
    def predict(self, model_input):
        return model_input

    def chat_completions(self, model_input):
        words = ["echo:"] + model_input["messages"][-1]["content"].split()
        if model_input.get("stream"):
            return self._stream(words)
        return {
            "id": "c1", "object": "chat.completion", "created": 0, "model": model_input["model"],
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": " ".join(words)}}],
        }

    def _stream(self, words):
        for word in words:
            chunk = {"id": "c1", "object": "chat.completion.chunk", "created": 0, "model": "m",
                     "choices": [{"index": 0, "delta": {"content": word + " "}, "finish_reason": None}]}
            yield f"data: {json.dumps(chunk)}\\n\\n"
        yield "data: [DONE]\\n\\n"
"""

# Truss: a model serves either a websocket or predict, so the websocket test has its own.
WEBSOCKET_MODEL = """
class Model:
    async def websocket(self, ws):
        while True:
            text = await ws.receive_text()
            if text == "bye":
                return
            await ws.send_text(text.upper())
"""


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    root = tmp_path_factory.mktemp("passthrough")
    chat_dir = write_model_dir(root / "chat", CHAT_MODEL)
    ws_dir = write_model_dir(root / "ws", WEBSOCKET_MODEL)
    with ModelServer(chat_dir, env={"TRUSS_REPLICA_ID": "c1"}) as chat, ModelServer(ws_dir, env={"TRUSS_REPLICA_ID": "w1"}) as ws:
        chat.wait_ready()
        ws.wait_ready()
        table = RoutingTable()
        table.set_model("chat", {"production": [("d1", 1.0)]})
        table.set_replicas("d1", [Replica("c1", chat.url)])
        table.set_model("ws", {"production": [("d2", 1.0)]})
        table.set_replicas("d2", [Replica("w1", ws.url)])
        with RunningGateway(table) as gw:
            yield gw


def test_openai_sdk_chat_completion_through_the_gateway(gateway):
    client = OpenAI(base_url=f"{gateway.url}/model-chat/production/sync/v1", api_key="unused")
    completion = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hello there"}])
    assert completion.choices[0].message.content == "echo: hello there"


def test_openai_sdk_streaming_chat_completion_through_the_gateway(gateway):
    client = OpenAI(base_url=f"{gateway.url}/model-chat/production/sync/v1", api_key="unused")
    stream = client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "one two three"}], stream=True
    )
    pieces = [chunk.choices[0].delta.content for chunk in stream]
    assert pieces == ["echo: ", "one ", "two ", "three "]


def test_websocket_through_the_gateway(gateway):
    url = gateway.url.replace("http://", "ws://") + "/model-ws/production/sync/v1/websocket"
    with connect(url) as ws:
        ws.send("hello")
        assert ws.recv() == "HELLO"
        ws.send("again")
        assert ws.recv() == "AGAIN"
        ws.send("bye")
        # The model returned: the replica closed with 1000, and the gateway passes that on.
        with pytest.raises(ConnectionClosedOK):
            ws.recv()
        assert ws.close_code == 1000
