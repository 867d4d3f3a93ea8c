"""One model server process on this machine, supervised: started, watched until ready, stopped.

The child runs in its own session so that a Ctrl-C reaches only its supervisor, which then
stops the child exactly once (SIGTERM: the server drains in-flight requests; SIGKILL after
protocol.STOP_GRACE_SECONDS). With `die_with_parent` (what `truss run` wants) Linux also
sends the child SIGTERM when the supervisor itself dies, so no orphan keeps the port; a
long-running supervisor leaves it off so that its replicas outlive a restart.

The supervisor knows how its replica is doing from the status file the server writes
(protocol.STATUS_FILE_ENV), never from its log lines. The log, stdout and stderr merged in
the order written, is copied to the sink the caller gives (a terminal, a file) as the bytes
arrive, so progress bars with carriage returns stay live.
"""

from __future__ import annotations

import ctypes
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Optional

import httpx

from truss_cli.defaults import DEFAULT_HOST
from truss_cli.local.child_env import scrubbed
from truss_cli.net import is_loopback, local_url
from truss_cli.server import protocol
from truss_cli.server.custom.options import CustomServerOptions
from truss_cli.server.status import FAILED, READY, ReplicaStatus, read_status
from truss_cli.supervision import LogSink, ReplicaFailed

_POLL_SECONDS = 0.05
# After the child exits, how long its remaining output may take to drain (a grandchild that
# inherited the pipe could hold it open for ever).
_DRAIN_SECONDS = 5.0
_READ_SIZE = 65536
_PR_SET_PDEATHSIG = 1
# Set by the supervisor from the spec, never inherited from whoever started the supervisor.
_SUPERVISOR_OWNED = (
    protocol.STATUS_FILE_ENV,
    protocol.REPLICA_CONFIG_ENV,
    protocol.REPLICA_ID_ENV,
    protocol.STAY_UP_ON_LOAD_FAILURE_ENV,
    protocol.EXPOSE_ERRORS_ENV,
)


@dataclass
class ReplicaSpec:
    """Everything needed to start one local replica of a model."""

    python: Path  # the interpreter of the model's environment
    bundle_dir: Path  # the server bundle, put on the child's PYTHONPATH
    model_dir: Path
    replica_config: Path  # what the server knows of config.yaml (truss_cli.config_to_replica)
    status_file: Path  # the server writes its ReplicaStatus here
    environ: Mapping[str, str]  # what the child inherits (TRUSS_SECRET_* reach the model so)
    config_variables: Mapping[str, str] = field(default_factory=dict)  # config.yaml's; they win
    host: str = DEFAULT_HOST
    port: int = 0  # 0: the server binds any free port and reports it in its status
    replica_id: str = field(default_factory=lambda: secrets.token_hex(8))
    die_with_parent: bool = True
    expose_errors: bool = False  # error responses carry the exception's type and message
    stay_up_on_load_failure: bool = False
    # Set for a `docker_server` config: the replica is the custom server replica, which
    # starts the user's server and serves the routes in front of it (no model directory read).
    custom_server: Optional[CustomServerOptions] = None

    def command(self) -> list[str]:
        if self.custom_server is not None:
            return [
                str(self.python), "-m", "truss_cli.server.custom", *self.custom_server.to_arguments(),
                "--host", self.host, "--port", str(self.port),
            ]
        return [
            str(self.python), "-m", "truss_cli.server", str(self.model_dir),
            "--replica-config", str(self.replica_config), "--host", self.host, "--port", str(self.port),
        ]

    def child_environment(self) -> dict[str, str]:
        env = scrubbed(self.environ, also=_SUPERVISOR_OWNED)
        env.update(self.config_variables)
        env["PYTHONPATH"] = str(self.bundle_dir)
        env["PYTHONUNBUFFERED"] = "1"  # logs appear as they happen even when piped
        env[protocol.STATUS_FILE_ENV] = str(self.status_file)
        env[protocol.REPLICA_ID_ENV] = self.replica_id
        if self.expose_errors:
            env[protocol.EXPOSE_ERRORS_ENV] = "1"
        if self.stay_up_on_load_failure:
            env[protocol.STAY_UP_ON_LOAD_FAILURE_ENV] = "1"
        return env


class ForeignServer(Exception):
    """Something other than this replica answers at its URL."""


class Replica:
    def __init__(self, spec: ReplicaSpec, sink: LogSink):
        self.spec = spec
        self.sink = sink
        self.process: Optional[subprocess.Popen[bytes]] = None
        self.url: Optional[str] = None  # known once ready (the real port when asked for 0)
        self._copier: Optional[threading.Thread] = None

    @property
    def pid(self) -> Optional[int]:
        return self.process.pid if self.process else None

    def start(self) -> None:
        # A status left over from an earlier replica must not be read as this one's.
        self.spec.status_file.unlink(missing_ok=True)
        self.process = subprocess.Popen(
            self.spec.command(),
            env=self.spec.child_environment(),
            cwd=self.spec.model_dir,  # as in the image, where the model directory is the working directory
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_parent_death_signal() if self.spec.die_with_parent and sys.platform.startswith("linux") else None,
        )
        assert self.process.stdout is not None
        self._copier = threading.Thread(target=_copy_output, args=(self.process.stdout, self.sink), daemon=True)
        self._copier.start()

    def poll(self) -> Optional[int]:
        assert self.process is not None
        return self.process.poll()

    def status(self) -> Optional[ReplicaStatus]:
        """This replica's last reported status (None before the server wrote one)."""
        status = read_status(self.spec.status_file)
        if status is None or status.replica_id != self.spec.replica_id:
            return None
        return status

    def wait_until_ready(self) -> str:
        """Block until the replica reports ready; its URL. No deadline: `load()` may take minutes.

        Raises ReplicaFailed when the process ends first, or reports a failed load.
        """
        while True:
            status = self.status()
            code = self.poll()
            if status is not None and status.phase == READY:
                break
            if status is not None and status.phase == FAILED and (self.spec.stay_up_on_load_failure or code is not None):
                raise ReplicaFailed(status.summary, self.wait() if code is not None else None, status.traceback)
            if code is not None:
                code = self.wait()
                status = self.status()  # written just before it exited, perhaps
                raise ReplicaFailed(status.summary if status else None, code, status.traceback if status else None)
            time.sleep(_POLL_SECONDS)
        self.url = local_url(self.spec.host, status.port or self.spec.port)
        self._confirm_identity(self.url)
        return self.url

    def _confirm_identity(self, url: str) -> None:
        """The URL must reach this replica, not another server answering on that address."""
        with httpx.Client(timeout=5.0, trust_env=not is_loopback(url)) as client:
            try:
                answer = client.get(url + protocol.STATUS_PATH)
            except httpx.HTTPError as exc:
                raise ForeignServer(f"the model server reported ready, but {url} does not answer ({exc})") from None
        if answer.headers.get(protocol.REPLICA_ID_HEADER) != self.spec.replica_id:
            raise ForeignServer(f"another server answers at {url}, not the model server this command started")

    def wait(self) -> int:
        """Wait for the process to end and for its last output to reach the sink."""
        assert self.process is not None
        code = self.process.wait()
        if self._copier is not None:
            self._copier.join(_DRAIN_SECONDS)
        return code

    def stop(self, grace: float = protocol.STOP_GRACE_SECONDS) -> int:
        """SIGTERM (the server drains), wait up to `grace` seconds, then SIGKILL. The exit code."""
        if self.process is None:  # interrupted before it started
            return 0
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.process.kill()
        code = self.wait()
        self.spec.status_file.unlink(missing_ok=True)
        return code


def _copy_output(source, sink: LogSink) -> None:  # type: ignore[no-untyped-def]
    """Copy `source` to `sink` chunk by chunk until the child closes it."""
    fd = source.fileno()
    writing = True
    try:
        while True:
            chunk = os.read(fd, _READ_SIZE)
            if not chunk:
                break
            if writing:
                try:
                    sink.write(chunk)
                    sink.flush()
                except (OSError, ValueError):
                    # The sink is gone (a closed pipe): keep reading so the child never
                    # blocks on a full pipe, just stop copying.
                    writing = False
    finally:
        source.close()


def _parent_death_signal() -> Optional[Callable[[], None]]:
    """A pre-exec hook asking Linux to SIGTERM the child when its supervisor dies.

    libc is looked up here, in the parent: the hook runs between fork and exec, where only
    the simplest calls are safe.
    """
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def hook() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the hook ran
            os._exit(1)

    return hook
