"""The management API client against a real HTTP server that answers per the contract."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.spec_server import ADMIN_KEY, INVOKE_KEY, SpecServer
from truss_cli.client.api import Api, ApiError, RemoteUnreachable
from truss_cli.errors import TrussError


def test_server_info_and_the_key_is_sent() -> None:
    with SpecServer() as server, Api(server.url, ADMIN_KEY) as api:
        assert api.server()["runtime"] == "process"


def test_unknown_key_is_401_with_a_hint() -> None:
    with SpecServer() as server, Api(server.url, "tc_wrong") as api:
        with pytest.raises(ApiError) as caught:
            api.models()
    assert caught.value.status == 401 and caught.value.error_code == "UNAUTHORIZED"
    assert "missing or unknown API key" in caught.value.message
    assert "truss remote add" in (caught.value.hint or "")


def test_invoke_key_on_management_is_403() -> None:
    with SpecServer() as server, Api(server.url, INVOKE_KEY) as api:
        with pytest.raises(ApiError) as caught:
            api.secrets()
    assert caught.value.status == 403 and "admin key" in (caught.value.hint or "")


def test_a_404_names_what_exists(tmp_path: Path) -> None:
    with SpecServer() as server, Api(server.url, ADMIN_KEY) as api:
        server.state.models["m1"] = {"id": "m1", "name": "hello", "created_at": "t", "deployments_count": 0, "production_deployment_id": None}
        with pytest.raises(ApiError) as caught:
            api.model("helo")
    assert caught.value.status == 404
    assert caught.value.message == "no model 'helo' (models: hello)"


def test_a_dead_remote_says_how_to_start_one() -> None:
    # A port nobody listens on: one we hold bound without listening.
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    try:
        url = f"http://127.0.0.1:{holder.getsockname()[1]}"
        with Api(url, ADMIN_KEY, remote_name="local") as api:
            with pytest.raises(RemoteUnreachable) as caught:
                api.server()
    finally:
        holder.close()
    assert caught.value.message == f"no control plane answers at {url}"
    assert "truss server start" in (caught.value.hint or "")
    assert isinstance(caught.value, TrussError)


def test_secrets_round_trip_never_returns_values() -> None:
    with SpecServer() as server, Api(server.url, ADMIN_KEY) as api:
        api.set_secret("hf_token", "s3cr3t")
        assert [s["name"] for s in api.secrets()] == ["hf_token"]
        assert server.state.secrets == {"hf_token": "s3cr3t"}
        api.delete_secret("hf_token")
        with pytest.raises(ApiError, match=r"no secret 'hf_token' \(secrets: none\)"):
            api.delete_secret("hf_token")
