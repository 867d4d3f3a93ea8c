"""Addresses of replicas on this machine: whether a port is free, the URL to reach a bind address."""

from __future__ import annotations

import errno
import ipaddress
import socket
from urllib.parse import urlsplit

from truss_cli.errors import TrussError


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
