"""The metrics history as a real gateway feeds it, over real sockets: a replica's 5xx and a
response it breaks off after its 200 are errors; a replica that cannot be reached is one error
(the 503 the client gets), not two; the routing table's replica changes are the replica series."""

from __future__ import annotations

import socket
import threading
from typing import Iterator

import httpx
import pytest

from gateway_support import RunningGateway
from truss_cli.controlplane.gateway import Replica, RoutingTable

MODEL = "m1"
ANSWERS = {
    "ok": b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
    "fails": b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 2\r\n\r\n{}",
    # A streamed answer whose replica goes away after the first chunk: the client got a 200.
    "breaks": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
}


class CannedReplica:
    """A socket server answering every request with the same bytes, then closing."""

    def __init__(self, answer: bytes) -> None:
        self.answer = answer
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            with connection:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = connection.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                connection.sendall(self.answer)

    def close(self) -> None:
        self.listener.close()


def unused_url() -> str:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


@pytest.fixture
def gateway() -> Iterator[RunningGateway]:
    replicas = {name: CannedReplica(answer) for name, answer in ANSWERS.items()}
    table = RoutingTable()
    with RunningGateway(table) as gw:
        history = gw.gateway.metrics.history
        table.on_replicas = history.replicas_changed  # as the control plane wires it

        def route() -> None:
            targets = {f"deployment/{name}": [(name, 1.0)] for name in [*ANSWERS, "gone"]}
            table.set_model(MODEL, targets)
            for name, replica in replicas.items():
                table.set_replicas(name, [Replica(f"r-{name}", replica.url)])
            table.set_replicas("gone", [Replica("r-gone", unused_url())])

        gw.on_loop(route)
        yield gw
    for replica in replicas.values():
        replica.close()


def window(gw: RunningGateway, deployment: str | None):
    found = []
    ids = [*ANSWERS, "gone"] if deployment is None else [deployment]
    gw.on_loop(lambda: found.append(gw.gateway.metrics.history.window(MODEL, deployment, ids, minutes=1)))
    return found[0]


def totals(gw: RunningGateway, deployment: str | None) -> tuple[int, int]:
    w = window(gw, deployment)
    return sum(n or 0 for n in w.requests), sum(n or 0 for n in w.errors)


def test_5xx_answers_broken_responses_and_unreachable_replicas_are_each_one_error(gateway):
    client = gateway.client
    for _ in range(3):
        assert client.post(f"/model-{MODEL}/deployment/ok/predict", json={}).status_code == 200
    assert client.post(f"/model-{MODEL}/deployment/fails/predict", json={}).status_code == 500
    with pytest.raises(httpx.HTTPError):  # the status was 200; the body never ended
        client.post(f"/model-{MODEL}/deployment/breaks/predict", json={}).read()
    assert client.post(f"/model-{MODEL}/deployment/gone/predict", json={}).status_code == 503
    assert totals(gateway, "ok") == (3, 0)
    assert totals(gateway, "fails") == (1, 1)
    assert totals(gateway, "breaks") == (1, 1)
    assert totals(gateway, "gone") == (1, 1), "a connect failure and its 503 are one failed request"
    assert totals(gateway, None) == (6, 3)
    assert window(gateway, "ok").p95_ms[-1] > 0


def test_the_replica_series_follows_the_routing_tables_changes(gateway):
    assert window(gateway, None).replicas[-1] == 4
    gateway.on_loop(lambda: gateway.table.set_replicas("ok", []))  # scaled to zero, say
    # A bucket shows the highest count during it: the replica that was there still counts.
    assert window(gateway, "ok").replicas[-1] == 1
    gateway.on_loop(lambda: gateway.table.set_replicas("ok", [Replica("a", "http://127.0.0.1:1"),
                                                              Replica("b", "http://127.0.0.1:2")]))
    assert window(gateway, "ok").replicas[-1] == 2
