"""The control plane on this machine: start it in the background, find it, stop it.

`start` runs `python -m truss_cli.controlplane serve` detached (its own session, output in
`<data_dir>/controlplane.log`), waits until it writes `<data_dir>/controlplane.json` and
answers `GET /v1/server`, and makes sure remote `local` in ~/.trussrc holds a key it
accepts: on a fresh data dir (or when the recorded key is unknown to it) a new admin key is
created with `python -m truss_cli.controlplane create-admin-key`, which opens the store
directly. Library code: everything comes from the caller's Settings.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from truss_cli.client.api import Api, ApiError, RemoteUnreachable
from truss_cli.client.remotes import LOCAL_REMOTE, Remote, add_remote, read_remotes, trussrc_path
from truss_cli.controlplane.runtimes.kubernetes.selection import KubernetesOptions
from truss_cli.errors import TrussError
from truss_cli.settings import DATABASE_URL_ENV, Settings

STATE_FILE = "controlplane.json"
LOG_FILE = "controlplane.log"
_START_SECONDS = 120.0
_STOP_SECONDS = 60.0
_LOG_LINES_SHOWN = 15
DEFAULT_PORT = 8800


def default_data_dir(settings: Settings) -> Path:
    return settings.data_dir / "controlplane"


@dataclass(frozen=True)
class Running:
    """A control plane that answers: its state file, its `GET /v1/server`, its remote."""

    state: dict[str, Any]
    server: dict[str, Any]
    remote: Remote
    started: bool  # by this call
    key_created: bool

    @property
    def url(self) -> str:
        return str(self.state["url"])


def read_state(data_dir: Path) -> dict[str, Any] | None:
    try:
        state = json.loads((data_dir / STATE_FILE).read_text())
    except (FileNotFoundError, ValueError):
        return None
    return state if isinstance(state, dict) and _alive(int(state.get("pid", 0))) else None


def serve_command(data_dir: Path, host: str, port: int, runtime: str,
                  dev_idle_seconds: float | None = None, kubernetes: KubernetesOptions | None = None) -> list[str]:
    """The control plane's command line. The database URL is not on it (a PostgreSQL URL carries
    a password, and a command line is visible to every user of the machine in `ps`): it goes
    in the environment, `serve_environment`."""
    command = [sys.executable, "-m", "truss_cli.controlplane", "serve", "--data-dir", str(data_dir),
               "--host", host, "--port", str(port), "--runtime", runtime]
    if dev_idle_seconds is not None:
        command += ["--dev-idle-seconds", f"{dev_idle_seconds:g}"]
    if kubernetes is not None:
        for flag, value in (("--namespace", kubernetes.namespace), ("--kubeconfig", kubernetes.kubeconfig),
                            ("--registry", kubernetes.registry)):
            if value:
                command += [flag, str(value)]
        for name in kubernetes.image_pull_secrets:
            command += ["--image-pull-secret", name]
    return command


def serve_environment(settings: Settings, database_url: str | None) -> dict[str, str]:
    """The environment of the control plane's processes: the user's, and the database URL."""
    environment = dict(settings.environ)
    if database_url:
        environment[DATABASE_URL_ENV] = database_url
    return environment


def start(
    settings: Settings,
    data_dir: Path | None = None,
    host: str = "127.0.0.1",
    port: int | None = None,
    runtime: str = "auto",
    database_url: str | None = None,
    dev_idle_seconds: float | None = None,
    kubernetes: KubernetesOptions | None = None,
) -> Running:
    """Start the control plane in the background (or find it running) and record remote `local`.

    `port=None` is the embedded default of `truss push`: 8800, or any free port when another
    program holds 8800 (the URL goes to ~/.trussrc either way, so nobody needs to know it).
    A port the user chose is kept, and one in use is a clear error before anything starts.
    """
    data_dir = (data_dir or default_data_dir(settings)).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    state = read_state(data_dir)
    started = state is None
    if state is None:
        chosen = _free_port(host, DEFAULT_PORT) if port is None else _check_port(host, port)
        state = _spawn(serve_environment(settings, database_url), data_dir,
                       serve_command(data_dir, host, chosen, runtime, dev_idle_seconds, kubernetes))
    remote, created = _ensure_key(settings, data_dir, state["url"], database_url)
    with Api.for_remote(remote) as api:
        server = api.server()
    return Running(state, server, remote, started, created)


def _port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return True
            raise TrussError(f"cannot listen on {host}:{port}: {exc.strerror}", hint="check --host") from None
    return False


def _check_port(host: str, port: int) -> int:
    if port and _port_in_use(host, port):
        raise TrussError(f"port {port} on {host} is in use by another program",
                         hint="choose another with --port (or --port 0 for any free one)")
    return port


def _free_port(host: str, preferred: int) -> int:
    """`preferred` when free, else 0 (the control plane binds any free port and writes it down)."""
    return 0 if _port_in_use(host, preferred) else preferred


def _spawn(environment: dict[str, str], data_dir: Path, command: list[str]) -> dict[str, Any]:
    (data_dir / STATE_FILE).unlink(missing_ok=True)  # a stale one from a killed run
    log_path = data_dir / LOG_FILE
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            env=environment, start_new_session=True, cwd=data_dir,
        )
    deadline = time.monotonic() + _START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise TrussError(
                f"the control plane exited with code {process.returncode} while starting:\n{tail_log(log_path)}",
                hint=f"its whole log: {log_path}",
            )
        state = read_state(data_dir)
        if state is not None and state.get("pid") == process.pid:
            return state
        time.sleep(0.1)
    process.terminate()
    raise TrussError(f"the control plane did not start within {_START_SECONDS:g}s", hint=f"see its log: {log_path}")


def _ensure_key(settings: Settings, data_dir: Path, url: str, database_url: str | None = None) -> tuple[Remote, bool]:
    """Remote `local` with `url` and a key this control plane accepts (a new one if needed)."""
    path = trussrc_path(settings.home)
    remotes = read_remotes(path)
    existing = next((remote for remote in remotes.remotes if remote.name == LOCAL_REMOTE), None)
    use = remotes.default is None or remotes.default.name == LOCAL_REMOTE
    if existing is not None:
        with Api(url, existing.api_key, LOCAL_REMOTE) as api:
            try:
                api.server()
                if existing.url != url:
                    existing = add_remote(path, LOCAL_REMOTE, url, existing.api_key, use=use, replace=True)
                return existing, False
            except ApiError as exc:
                if exc.status != 401:
                    raise
    key = create_admin_key(settings, data_dir, database_url=database_url)
    return add_remote(path, LOCAL_REMOTE, url, key, use=use, replace=True), True


def create_admin_key(settings: Settings, data_dir: Path, name: str = "truss-cli local",
                     database_url: str | None = None) -> str:
    command = [sys.executable, "-m", "truss_cli.controlplane", "create-admin-key", "--data-dir", str(data_dir), "--name", name]
    done = subprocess.run(command, capture_output=True, text=True, env=serve_environment(settings, database_url),
                          check=False)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise TrussError(f"creating the admin key failed (exit {done.returncode}): {done.stderr.strip()[-2000:]}")
    return lines[-1].strip()


def status(settings: Settings, data_dir: Path | None = None) -> Running | None:
    """The running control plane of `data_dir`, or None when none runs."""
    data_dir = (data_dir or default_data_dir(settings)).resolve()
    state = read_state(data_dir)
    if state is None:
        return None
    remote = next((r for r in read_remotes(trussrc_path(settings.home)).remotes if r.name == LOCAL_REMOTE), None)
    if remote is None:
        raise TrussError(f"a control plane runs at {state['url']} but ~/.trussrc has no remote `local` for it",
                         hint="add it: truss remote add local URL --api-key KEY")
    with Api(state["url"], remote.api_key, LOCAL_REMOTE) as api:
        server = api.server()
    return Running(state, server, remote, False, False)


def stop(settings: Settings, data_dir: Path | None = None, stop_replicas: bool = False) -> dict[str, Any] | None:
    """Stop the control plane of `data_dir` (SIGTERM, as the spec says; replicas keep running
    unless `stop_replicas`). Returns its state, or None when none ran."""
    data_dir = (data_dir or default_data_dir(settings)).resolve()
    state = read_state(data_dir)
    if state is None:
        return None
    pid = int(state["pid"])
    if stop_replicas:
        remote = next((r for r in read_remotes(trussrc_path(settings.home)).remotes if r.name == LOCAL_REMOTE), None)
        if remote is None:
            raise TrussError("no remote `local` in ~/.trussrc: cannot ask the control plane to stop its replicas")
        with Api(state["url"], remote.api_key, LOCAL_REMOTE) as api:
            try:
                api.stop_server(stop_replicas=True)
            except RemoteUnreachable:
                pass
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return state
    deadline = time.monotonic() + _STOP_SECONDS
    while _alive(pid):
        if time.monotonic() >= deadline:
            raise TrussError(f"the control plane (pid {pid}) did not stop within {_STOP_SECONDS:g}s",
                             hint=f"see {data_dir / LOG_FILE}; `kill -9 {pid}` ends it (nothing is lost)")
        time.sleep(0.1)
    return state


def tail_log(path: Path, lines: int = _LOG_LINES_SHOWN) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)  # our own child that exited: reap it
        if waited == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
