"""The request size limit (TRUSS_MAX_REQUEST_BYTES) against a real server."""

from __future__ import annotations

import pytest

from test_server_harness import ModelServer, start_ready, write_model_dir
from truss_cli.server.protocol import MAX_REQUEST_BYTES_ENV, PREDICT_PATH
from truss_cli.server.request_body import max_request_bytes, too_large

LIMIT = 4096

SIZES = """
from fastapi import Request


class Model:
    def predict(self, model_input):
        return len(model_input)

    async def chat_completions(self, request: Request):  # reads the body itself
        return len(await request.body())
"""


@pytest.fixture(scope="module")
def limited(tmp_path_factory):
    root = tmp_path_factory.mktemp("limited") / "m"
    with start_ready(root, SIZES, env={MAX_REQUEST_BYTES_ENV: str(LIMIT)}) as server:
        yield server


def chunked(data: bytes, size: int = 1000):
    # A generator body: httpx sends it with Transfer-Encoding: chunked, no Content-Length.
    for start in range(0, len(data), size):
        yield data[start : start + size]


def test_a_body_at_the_limit_is_accepted(limited):
    body = b'"' + b"x" * (LIMIT - 2) + b'"'
    assert limited.client.post(PREDICT_PATH, content=body).json() == LIMIT - 2


@pytest.mark.parametrize("path", [PREDICT_PATH, "/v1/chat/completions"])
def test_a_body_over_the_limit_is_a_413_naming_the_limit(limited, path):
    body = b'"' + b"x" * LIMIT + b'"'
    response = limited.client.post(path, content=body)
    assert response.status_code == 413
    assert response.json() == {"error": "request body is larger than the limit of 4 KiB (TRUSS_MAX_REQUEST_BYTES)"}
    assert limited.client.post(path, content=b'"ok"').status_code == 200  # the connection is still usable


@pytest.mark.parametrize("path", [PREDICT_PATH, "/v1/chat/completions"])
def test_a_chunked_body_over_the_limit_is_a_413(limited, path):
    body = b'"' + b"x" * (3 * LIMIT) + b'"'
    response = limited.client.post(path, content=chunked(body))
    assert response.status_code == 413
    assert "4 KiB" in response.json()["error"]
    small = limited.client.post(path, content=chunked(b'"' + b"y" * 2500 + b'"'))
    # predict gets the parsed string; chat_completions counts the raw body, quotes included.
    assert small.status_code == 200 and small.json() == (2500 if path == PREDICT_PATH else 2502)


def test_the_limit_is_given_in_readable_units():
    assert too_large(128 * 1024 * 1024).message == "request body is larger than the limit of 128 MiB (TRUSS_MAX_REQUEST_BYTES)"
    assert "limit of 2 GiB" in too_large(2 << 30).message
    assert "limit of 1000 bytes" in too_large(1000).message


def test_the_limit_comes_from_the_environment_or_the_default():
    assert max_request_bytes({}) == 128 * 1024 * 1024
    assert max_request_bytes({MAX_REQUEST_BYTES_ENV: "1024"}) == 1024
    for bad in ("lots", "-1", "0", "1.5"):
        with pytest.raises(ValueError, match=f"TRUSS_MAX_REQUEST_BYTES must be a positive whole number of bytes .*{bad!r}"):
            max_request_bytes({MAX_REQUEST_BYTES_ENV: bad})


def test_a_bad_limit_stops_the_server_with_exit_2(tmp_path):
    model_dir = write_model_dir(tmp_path / "bad", SIZES)
    with ModelServer(model_dir, env={MAX_REQUEST_BYTES_ENV: "lots"}) as server:
        assert server.wait_exit() == 2
    assert "TRUSS_MAX_REQUEST_BYTES must be a positive whole number of bytes" in server.log()
