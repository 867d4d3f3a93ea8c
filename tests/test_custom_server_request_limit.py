"""TRUSS_MAX_REQUEST_BYTES in front of a custom server: the replica refuses a larger body with
the model server's 413 and body, and the custom server never gets such a request whole."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from custom_server_support import CustomReplica, app_options, reserve_port  # noqa: F401 (fixture)
from truss_cli.server import protocol
from truss_cli.server.request_body import too_large

LIMIT = 4096
# What the model server answers over the limit (tests/test_server_request_body.py).
REFUSAL = {"error": "request body is larger than the limit of 4 KiB (TRUSS_MAX_REQUEST_BYTES)"}


@pytest.fixture
def limited(tmp_path: Path, reserve_port):
    env = {"READY_AT_ONCE": "1", protocol.MAX_REQUEST_BYTES_ENV: str(LIMIT)}
    with CustomReplica(tmp_path, app_options(reserve_port()), env=env) as replica:
        replica.wait_phase("ready")
        yield replica


def chunked(data: bytes, size: int = 1000):
    # A generator body: httpx sends it with Transfer-Encoding: chunked, no Content-Length.
    for start in range(0, len(data), size):
        yield data[start : start + size]


def test_the_refusal_is_the_model_servers() -> None:
    assert {"error": too_large(LIMIT).message} == REFUSAL


def test_a_body_at_the_limit_reaches_the_custom_server(limited: CustomReplica) -> None:
    body = b"x" * LIMIT
    answer = limited.client.post(protocol.PREDICT_PATH, content=body)
    assert answer.status_code == 200 and answer.json()["body"] == body.decode()
    streamed = limited.client.post(protocol.PREDICT_PATH, content=chunked(body))
    assert streamed.status_code == 200 and streamed.json()["body"] == body.decode()


@pytest.mark.parametrize("path", [protocol.PREDICT_PATH, "/v1/chat/completions"])
def test_a_body_over_the_limit_is_a_413_and_the_connection_stays_usable(limited: CustomReplica, path: str) -> None:
    response = limited.client.post(path, content=b"x" * (LIMIT + 1))
    assert response.status_code == 413
    assert response.json() == REFUSAL
    assert response.headers[protocol.REPLICA_ID_HEADER] == limited.replica_id
    assert limited.client.post(path, content=b"ok").json()["body"] == "ok"


def test_a_large_body_over_the_limit_is_refused_without_reaching_the_custom_server(limited: CustomReplica) -> None:
    # Larger than what the replica reads whole before passing it on.
    response = limited.client.post(protocol.PREDICT_PATH, content=b"x" * (1 << 20))
    assert response.status_code == 413 and response.json() == REFUSAL
    assert "POST /predict" not in limited.log()  # the app logs every request it answers


def test_a_chunked_body_over_the_limit_is_a_413(limited: CustomReplica) -> None:
    response = limited.client.post(protocol.PREDICT_PATH, content=chunked(b"x" * (3 * LIMIT)))
    assert response.status_code == 413 and response.json() == REFUSAL
    small = limited.client.post(protocol.PREDICT_PATH, content=chunked(b"y" * 2500))
    assert small.status_code == 200 and small.json()["body"] == "y" * 2500


def test_expect_continue_over_the_limit_is_refused_before_the_body_is_sent(limited: CustomReplica) -> None:
    port = int(limited.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
        connection.sendall(
            f"POST {protocol.PREDICT_PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: {LIMIT + 1}\r\n"
            "Expect: 100-continue\r\n\r\n".encode()
        )
        reader = connection.makefile("rb")
        assert reader.readline().startswith(b"HTTP/1.1 413")
        headers = {}
        while (line := reader.readline()) != b"\r\n":
            name, _, value = line.decode().partition(":")
            headers[name.strip().lower()] = value.strip()
        assert headers["connection"] == "close"
        assert json.loads(reader.read(int(headers["content-length"]))) == REFUSAL


def test_a_bad_limit_stops_the_replica_with_exit_2(tmp_path: Path, reserve_port) -> None:
    env = {protocol.MAX_REQUEST_BYTES_ENV: "lots"}
    with CustomReplica(tmp_path, app_options(reserve_port()), env=env) as replica:
        assert replica.wait_exit() == protocol.EXIT_BAD_CONFIG
        assert "TRUSS_MAX_REQUEST_BYTES must be a positive whole number of bytes" in replica.log()
