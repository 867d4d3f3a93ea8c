"""The gateway's HTTP/1.1 client against a replica that does what a model server never does:
framing (chunked, 204, 304, HEAD, a body ended by close), hop-by-hop headers, streamed request
bodies, and keep-alive connections the replica drops."""

from __future__ import annotations

import asyncio

import pytest

from gateway_support import RunningGateway
from http1_replica import Http1Replica
from truss_cli.controlplane.gateway import Replica, RoutingTable
from truss_cli.controlplane.gateway.upstream import ConnectFailed, Upstream, UpstreamBroken


def table_for(replica: Http1Replica) -> RoutingTable:
    table = RoutingTable()
    table.set_model("m1", {"production": [("dep1", 1.0)]})
    table.set_replicas("dep1", [Replica("raw-1", replica.url)])
    return table


def sync(path: str) -> str:
    return "/model-m1/production/sync" + path


@pytest.fixture
def replica():
    with Http1Replica() as running:
        yield running


def test_one_kept_alive_connection_carries_sequential_requests(replica):
    with RunningGateway(table_for(replica)) as gw:
        for n in range(5):
            response = gw.client.post(sync("/echo"), content=f"request {n}".encode())
            assert response.status_code == 200
            assert response.json()["body"] == f"request {n}"
        assert replica.connections == 1


def test_a_chunked_answer_arrives_whole_and_the_connection_is_reused(replica):
    with RunningGateway(table_for(replica)) as gw:
        chunked = gw.client.get(sync("/chunked"))
        assert chunked.status_code == 200 and chunked.text == "one two three"
        # Trailers and the last chunk were read off the connection: the next answer is intact.
        assert gw.client.post(sync("/echo"), content=b"after").json()["body"] == "after"
        assert replica.connections == 1


def test_head_204_and_304_carry_no_body_and_keep_the_connection(replica):
    with RunningGateway(table_for(replica)) as gw:
        head = gw.client.head(sync("/echo"))
        assert head.status_code == 200 and head.content == b""
        assert int(head.headers["content-length"]) > 0  # the length a GET would have
        no_content = gw.client.delete(sync("/no-content"))
        assert no_content.status_code == 204 and no_content.content == b""
        not_modified = gw.client.get(sync("/not-modified"))
        assert not_modified.status_code == 304 and not_modified.content == b""
        assert not_modified.headers["etag"] == '"v1"'
        assert gw.client.post(sync("/echo"), content=b"next").json()["body"] == "next"
        assert replica.connections == 1


def test_an_answer_ended_by_closing_is_relayed_whole(replica):
    with RunningGateway(table_for(replica)) as gw:
        response = gw.client.get(sync("/until-close"))
        assert response.status_code == 200 and response.text == "everything until the end"
        assert gw.client.post(sync("/echo"), content=b"again").json()["body"] == "again"
        assert replica.connections == 2  # that connection could not be used again


def test_hop_by_hop_headers_and_the_api_key_stay_at_the_gateway(replica):
    with RunningGateway(table_for(replica)) as gw:
        sent = gw.client.post(
            sync("/echo?a=1&b=two%20words"),
            content=b"{}",
            headers={"Authorization": "Api-Key secret", "Connection": "keep-alive, x-client-hop", "X-Client-Hop": "1",
                     "Proxy-Authorization": "Basic abc", "TE": "trailers", "X-Custom": "kept"},
        )
        echoed = sent.json()
        names = [name for name, _ in echoed["headers"]]
        for dropped in ("authorization", "x-client-hop", "proxy-authorization", "te", "connection"):
            assert dropped not in names
        headers = dict(echoed["headers"])
        assert headers["x-custom"] == "kept"
        assert headers["host"] == f"127.0.0.1:{replica.port}"
        assert headers["x-forwarded-for"] == "127.0.0.1"
        assert echoed["target"] == "/echo?a=1&b=two%20words"

        answer = gw.client.get(sync("/hop"))
        assert answer.text == "ok" and answer.headers["x-kept"] == "yes"
        assert "x-hop-secret" not in answer.headers and "keep-alive" not in answer.headers
        assert answer.headers["x-truss-replica-id"] == "raw-1"  # added: this replica does not send it


def test_a_path_with_characters_a_request_line_cannot_carry_is_quoted_again(replica):
    with RunningGateway(table_for(replica)) as gw:
        echoed = gw.client.get(sync("/echo/a%20b%2Fc")).json()
        assert echoed["target"] == "/echo/a%20b/c"  # ASGI decoded %2F; it stays a slash


def test_request_bodies_stream_to_the_replica_with_their_length_or_chunked(replica):
    big = b"0123456789" * 150_000  # 1.5 MB: over the size the gateway reads whole
    with RunningGateway(table_for(replica), max_request_bytes=4 << 20) as gw:
        with_length = gw.client.post(sync("/echo"), content=big).json()
        assert with_length["length"] == len(big) and with_length["body"] == big.decode()
        assert dict(with_length["headers"])["content-length"] == str(len(big))

        def pieces():
            for start in range(0, len(big), 100_000):
                yield big[start : start + 100_000]

        chunked = gw.client.post(sync("/echo"), content=pieces()).json()
        assert chunked["length"] == len(big) and chunked["body"] == big.decode()
        assert dict(chunked["headers"])["transfer-encoding"] == "chunked"


def test_a_large_answer_streams_through_whole(replica):
    with RunningGateway(table_for(replica)) as gw:
        response = gw.client.get(sync("/big?n=3000000"))
        assert response.status_code == 200 and response.content == b"x" * 3_000_000


def test_a_connection_the_replica_dropped_while_idle_is_not_used():
    with Http1Replica(close_after_answer=True) as replica, RunningGateway(table_for(replica)) as gw:
        bodies = [gw.client.post(sync("/echo"), content=f"{n}".encode()).json()["body"] for n in range(5)]
        assert bodies == ["0", "1", "2", "3", "4"]
        assert [r["body"] for r in replica.requests] == [b"0", b"1", b"2", b"3", b"4"]  # each arrived once


def test_a_connection_dropped_as_the_request_arrives_is_retried_on_a_new_one():
    with Http1Replica(drop_reused=True) as replica, RunningGateway(table_for(replica)) as gw:
        bodies = [gw.client.post(sync("/echo"), content=f"{n}".encode()).json()["body"] for n in range(4)]
        assert bodies == ["0", "1", "2", "3"]
        assert replica.dropped == 3  # every request after the first met a dropped connection first
        assert [r["body"] for r in replica.requests] == [b"0", b"1", b"2", b"3"]


def test_only_a_request_that_never_left_may_move_to_another_replica():
    """ConnectFailed (the gateway tries another replica) only when nothing was sent; a
    request sent on a connection the replica dropped, to a replica that is then gone, may
    have reached it: UpstreamBroken (reported, never run twice)."""

    async def scenario(replica: Http1Replica) -> None:
        upstream = Upstream(connect_timeout=5)
        try:
            first = await upstream.send(replica.url, "/echo", "POST", b"", b"first")
            assert first.status == 200 and b'"first"' in await first.read()
            first.release()  # back to the pool
            await asyncio.to_thread(replica.stop_listening)
            with pytest.raises(UpstreamBroken):
                await upstream.send(replica.url, "/echo", "POST", b"", b"second")
            with pytest.raises(ConnectFailed):
                await upstream.send(replica.url, "/echo", "POST", b"", b"third")
        finally:
            await upstream.aclose()

    with Http1Replica(drop_reused=True) as replica:
        asyncio.run(scenario(replica))
        assert [r["body"] for r in replica.requests] == [b"first"]
        assert replica.dropped == 1
