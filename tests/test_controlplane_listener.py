"""The control plane's listening socket: connections accepted from it send small writes at once.

uvicorn answers in two writes (head, then body). Without TCP_NODELAY on the accepted
connection the body waits for the client's ACK of the head, which a keep-alive client delays
(~40 ms on Linux): every request after the first on a connection took ~45 ms through the
gateway. asyncio sets TCP_NODELAY itself, but only on sockets that say they are TCP.
"""

from __future__ import annotations

import asyncio
import socket

from truss_cli.controlplane.serve import listening_socket


def _accepted_nodelay(sock: socket.socket) -> int:
    async def main() -> int:
        accepted: asyncio.Future = asyncio.get_running_loop().create_future()

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            accepted.set_result(writer.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        server = await asyncio.start_server(handle, sock=sock)  # what uvicorn does with `sockets=[...]`
        async with server:
            _, writer = await asyncio.open_connection(*sock.getsockname()[:2])
            try:
                return await asyncio.wait_for(accepted, 10)
            finally:
                writer.close()

    return asyncio.run(main())


def test_connections_accepted_from_the_control_planes_socket_have_tcp_nodelay():
    assert _accepted_nodelay(listening_socket("127.0.0.1", 0)) != 0


def test_a_plain_stream_socket_would_not_get_it():
    # The check above can fail: asyncio leaves Nagle on for a socket made without IPPROTO_TCP.
    plain = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    plain.bind(("127.0.0.1", 0))
    assert _accepted_nodelay(plain) == 0
