"""Running a custom server replica: listen, start the custom server, wait until its readiness
endpoint answers, serve until SIGTERM, drain, stop it.

Phases as the model server reports them: starting, loading (listening, the custom server
starting up), ready (its readiness endpoint answered 2xx), failed (it exited: the summary
names its exit code and last log line, the status keeps its last lines), stopping.

Before the custom server starts, its declared secrets are written out as files
(`secret_files.py`); its environment carries none of them.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Dict, Mapping, Optional

import truss_cli
from truss_cli.server import protocol
from truss_cli.server.custom.child import CustomServerProcess, exit_description
from truss_cli.server.custom.options import CustomServerOptions
from truss_cli.server.custom.proxy import UPSTREAM_HOST, Proxy
from truss_cli.server.custom.routes import RouteMap
from truss_cli.server.custom.secret_files import SecretFiles, SecretsUnavailable, write_secret_files
from truss_cli.server.request_body import max_request_bytes
from truss_cli.server.reporter import StatusReporter
from truss_cli.server.status import FAILED, LOADING, READY, STOPPING

logger = logging.getLogger("truss.custom_server")

# After the drain, how long the custom server gets to exit on SIGTERM before SIGKILL. The
# drain and this together stay within the supervisor's STOP_GRACE_SECONDS.
CHILD_GRACE_SECONDS = protocol.STOP_GRACE_SECONDS - protocol.DRAIN_SECONDS - 2
# Readiness polls start fast (a server that is up in 100 ms is served in 100 ms) and slow
# down to one a second, so a server loading for minutes does not log ten polls a second.
_FIRST_POLL_SECONDS = 0.05
_LAST_POLL_SECONDS = 1.0
# Ours, not the custom server's: it gets the caller's environment without them. Secrets reach
# it as files only (TRUSS_SECRETS_DIR then names the directory of those files).
_REPLICA_ONLY = (
    protocol.STATUS_FILE_ENV, protocol.REPLICA_ID_ENV, protocol.STAY_UP_ON_LOAD_FAILURE_ENV, protocol.SECRETS_DIR_ENV,
)


def serve(
    options: CustomServerOptions,
    host: str,
    port: int,
    *,
    environ: Mapping[str, str],
    secrets_path: Optional[Path] = None,
    status_file: Optional[Path] = None,
    replica_id: Optional[str] = None,
    stay_up_on_load_failure: bool = False,
) -> int:
    """Serve until SIGTERM/SIGINT; the process exit code.

    `secrets_path`: where the custom server's secret files go (None: a private temporary
    directory). `environ` holds the secrets' values (TRUSS_SECRETS_DIR, TRUSS_SECRET_<name>).
    """
    _configure_logging()
    reporter = StatusReporter(status_file, replica_id)
    try:
        reporter.begin()
    except OSError as exc:
        print(f"error: cannot write the status file {status_file}: {exc.strerror or exc}", file=sys.stderr)
        return protocol.EXIT_BAD_CONFIG
    problem = options.problem()
    try:
        # The same limit, read the same way, as the model server's (413 with the same body).
        limit = max_request_bytes(environ)
    except ValueError as exc:
        problem = problem or str(exc)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        reporter.enter(FAILED, summary=f"invalid options: {problem}")
        return protocol.EXIT_BAD_CONFIG
    replica = _Replica(options, reporter, replica_id, stay_up_on_load_failure, environ, limit)
    return asyncio.run(replica.run(host, port, secrets_path))


def child_environment(environ: Mapping[str, str]) -> Dict[str, str]:
    """The custom server's environment: ours, without the replica's own settings, without any
    secret (it gets them as files) and without this bundle on PYTHONPATH (the custom server's
    Python must not see our modules)."""
    env = {
        key: value
        for key, value in environ.items()
        if key not in _REPLICA_ONLY and not key.startswith(protocol.SECRET_ENV_PREFIX)
    }
    bundle = os.path.dirname(os.path.dirname(os.path.abspath(truss_cli.__file__)))
    if "PYTHONPATH" in env:
        kept = [entry for entry in env["PYTHONPATH"].split(os.pathsep) if entry and os.path.abspath(entry) != bundle]
        if kept:
            env["PYTHONPATH"] = os.pathsep.join(kept)
        else:
            del env["PYTHONPATH"]
    return env


class _Replica:
    def __init__(
        self,
        options: CustomServerOptions,
        reporter: StatusReporter,
        replica_id: Optional[str],
        stay_up: bool,
        environ: Mapping[str, str],
        max_request_bytes: int,
    ) -> None:
        self.options = options
        self.reporter = reporter
        self.stay_up = stay_up
        self.environ = environ
        self.proxy = Proxy(RouteMap(options), options.server_port, replica_id, lambda: reporter.current, max_request_bytes)
        self.child = CustomServerProcess(options.start_command, child_environment(environ))

    async def run(self, host: str, port: int, secrets_path: Optional[Path] = None) -> int:
        secrets: Optional[SecretFiles] = None
        if self.options.secrets:
            try:
                secrets = self._write_secrets(secrets_path)
            except SecretsUnavailable as exc:
                return self._fail(str(exc))
        try:
            return await self._run(host, port)
        finally:
            if secrets is not None:
                secrets.remove()

    def _write_secrets(self, secrets_path: Optional[Path]) -> SecretFiles:
        files = write_secret_files(self.options.secrets, self.environ, secrets_path)
        self.child.environ[protocol.SECRETS_DIR_ENV] = str(files.directory)
        given = sorted(files.written + files.found)
        logger.info("Secrets for the custom server: %s in %s", ", ".join(given) or "none", files.directory)
        for reason in files.missing.values():
            logger.warning("The custom server gets no file for a declared secret: %s", reason)
        return files

    async def _run(self, host: str, port: int) -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        server_port = self.options.server_port
        if await _answers(server_port):
            # Its readiness would be read from someone else's server.
            return self._fail(f"port {server_port} is already in use on this machine, before the custom server started")
        try:
            listener = await asyncio.start_server(self.proxy.handle_client, host, port)
        except OSError as exc:
            return self._fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
        bound = listener.sockets[0].getsockname()[1]
        self.reporter.enter(LOADING, port=bound)
        logger.info("Serving on http://%s:%d in front of the custom server on port %d", host, bound, server_port)
        logger.info("Starting the custom server: %s", self.options.start_command)
        await self.child.start()
        exited = asyncio.ensure_future(self.child.wait())
        stopped = asyncio.ensure_future(stop.wait())
        ready = asyncio.ensure_future(self._wait_until_ready())
        await asyncio.wait({exited, stopped, ready}, return_when=asyncio.FIRST_COMPLETED)
        if ready.done() and not exited.done():
            self.proxy.ready = True
            self.reporter.enter(READY)
            logger.info("The custom server is ready (GET %s answered)", self.options.readiness_endpoint)
            await asyncio.wait({exited, stopped}, return_when=asyncio.FIRST_COMPLETED)
        ready.cancel()
        if exited.done() and not stopped.done():
            code = exited.result()
            lines = self.child.last_lines()
            summary = f"the custom server {exit_description(code)}" + (f": {lines[-1]}" if lines else "")
            self.reporter.enter(FAILED, summary=summary, traceback="\n".join(lines) or None)
            if not self.stay_up:
                listener.close()
                logger.error("%s", summary)
                return protocol.EXIT_LOAD_FAILED
            self.proxy.refusal = summary
            logger.error("%s; serving the failure until stopped", summary)
            await stopped
            listener.close()
            return 0
        # Stopped: new connections are refused, requests in flight finish, then the server stops.
        listener.close()
        if self.reporter.current.phase != FAILED:
            self.reporter.enter(STOPPING)
        if not await self.proxy.drain(protocol.DRAIN_SECONDS):
            logger.warning("Requests still running after %d s; stopping anyway", protocol.DRAIN_SECONDS)
        exited.cancel()
        code = await self.child.stop(CHILD_GRACE_SECONDS)
        logger.info("Stopped (the custom server %s)", exit_description(code) if code is not None else "was not running")
        return 0

    def _fail(self, summary: str) -> int:
        self.reporter.enter(FAILED, summary=summary)
        logger.error("%s", summary)
        return protocol.EXIT_LOAD_FAILED

    async def _wait_until_ready(self) -> None:
        """Return once the readiness endpoint answers 2xx. No deadline, like a model's load()."""
        endpoint = self.options.readiness_endpoint
        port = self.options.server_port
        logger.info("Waiting for GET %s on port %d to answer 2xx", endpoint, port)
        pause = _FIRST_POLL_SECONDS
        while True:
            status = await _probe(port, endpoint)
            if status is not None and 200 <= status < 300:
                return
            await asyncio.sleep(pause)
            pause = min(pause * 1.5, _LAST_POLL_SECONDS)


async def _probe(port: int, path: str) -> Optional[int]:
    """The status of GET `path` on the custom server, or None if it does not answer."""
    try:
        reader, writer = await asyncio.open_connection(UPSTREAM_HOST, port)
    except OSError:
        return None
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {UPSTREAM_HOST}:{port}\r\nConnection: close\r\n\r\n".encode("latin-1"))
        line = await reader.readline()
        parts = line.split(b" ", 2)
        return int(parts[1]) if len(parts) >= 2 and parts[0].startswith(b"HTTP/") else None
    except (OSError, ValueError, asyncio.IncompleteReadError):
        return None
    finally:
        writer.close()


async def _answers(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection(UPSTREAM_HOST, port)
    except OSError:
        return False
    writer.close()
    return True


def _configure_logging() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
