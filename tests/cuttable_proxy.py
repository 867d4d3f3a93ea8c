"""A TCP proxy in front of a real server whose connections a test can cut: the network blip a
page that follows a stream must survive. `cut()` closes every open connection (both sides see
it end, as when a link drops or the server restarts); while `refusing`, a new connection is
closed at once (the server is not back yet). Bytes pass unchanged otherwise."""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import Iterator
from urllib.parse import urlsplit


class CuttableProxy:
    def __init__(self, target_url: str):
        parts = urlsplit(target_url)
        self._target = (parts.hostname or "127.0.0.1", parts.port or 80)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self.refusing = False
        self.accepted = 0
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self.refusing:
                client.close()
                continue
            try:
                upstream = socket.create_connection(self._target)
            except OSError:
                client.close()
                continue
            with self._lock:
                self.accepted += 1
                self._open.update((client, upstream))
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            self._drop(source, sink)

    def _drop(self, *sockets: socket.socket) -> None:
        for sock in sockets:
            with self._lock:
                self._open.discard(sock)
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def cut(self) -> int:
        """Close every open connection; how many sockets were open."""
        with self._lock:
            cutting = list(self._open)
        self._drop(*cutting)
        return len(cutting)

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        self.cut()


@contextlib.contextmanager
def cuttable_proxy(target_url: str) -> Iterator[CuttableProxy]:
    proxy = CuttableProxy(target_url)
    try:
        yield proxy
    finally:
        proxy.close()
