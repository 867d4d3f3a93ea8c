"""Talking to replicas over the network from the CLI side: free ports, URLs, readiness."""

from __future__ import annotations

import errno
import ipaddress
import socket
import time
from typing import Callable, Optional
from urllib.parse import urlsplit

import httpx

from truss_cli.errors import TrussError
from truss_cli.server.protocol import READINESS_PATH

_POLL_INTERVAL_SECONDS = 0.1


def check_port_free(host: str, port: int, flag: str = "--port") -> None:
    """Fail now, before any slow work, if a server could not bind `host:port`."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # uvicorn and Docker set SO_REUSEADDR too: a port in TIME_WAIT is usable, one with a
        # listener is not.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise port_in_use(host, port, flag) from None
            raise TrussError(f"cannot listen on {host}:{port}: {exc.strerror}", hint=f"check --host and {flag}") from None


def port_in_use(host: str, port: int, flag: str = "--port") -> TrussError:
    return TrussError(
        f"port {port} on {host} is already in use",
        hint=f"stop whatever is listening there, or pick another port with {flag} {port + 1 if port < 65535 else 8080}",
    )


def local_url(host: str, port: int) -> str:
    """The URL a client on this machine uses (a wildcard bind is reached via loopback)."""
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def is_loopback(url: str) -> bool:
    """True for URLs on this machine: no HTTP(S)_PROXY setting should route those elsewhere."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class NotReady(Exception):
    """The replica stopped (or the deadline passed) before it answered ready."""


def wait_until_ready(
    base_url: str,
    is_alive: Callable[[], bool],
    timeout: Optional[float] = None,
) -> None:
    """Block until `base_url` answers ready (200 on the readiness path).

    Raises NotReady as soon as `is_alive()` turns false, or when `timeout` passes. Without a
    timeout it waits as long as the replica lives: `load()` may take minutes (large weights).
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    url = base_url.rstrip("/") + READINESS_PATH
    # A replica is always local: a proxy from the environment must not intercept the polls.
    with httpx.Client(timeout=2.0, trust_env=not is_loopback(url)) as client:
        while True:
            if not is_alive():
                raise NotReady(f"the model server stopped before {url} answered ready")
            try:
                if client.get(url).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if deadline is not None and time.monotonic() > deadline:
                raise NotReady(f"{url} did not answer ready within {timeout:.0f} s")
            time.sleep(_POLL_INTERVAL_SECONDS)
