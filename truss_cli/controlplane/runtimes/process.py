"""The process runtime: a replica is a model server (or custom server replica) process on
this machine, in the cached environment `truss_cli.local` builds.

Each replica owns `<data_dir>/replicas/<replica_id>/`:
  handle.json  the Handle (what `list()` finds after a control-plane restart)
  status.json  the server's structured status (protocol.STATUS_FILE_ENV)
  replica.log  its output, timestamped by `logshim`, kept after stop
  exit         its exit code, written by `logshim` when it ends
  secrets/     0700, one 0600 file per secret, named by TRUSS_SECRETS_DIR; removed on stop.
               A custom server reads these very files (never TRUSS_SECRET_* variables).
  model/       a development replica's private copy of its tree (it patches it in place)
  control_token  a development replica's control token (0600; Handle data names the file)

A development replica (ReplicaSpec.development) runs `python -m truss_cli.server.control`
with a fresh random token in $TRUSS_CONTROL_TOKEN and control port 0; `start` returns once
the status file names both ports, with the control URL in the Handle's data.

The replica runs under `logshim` in a session of its own, without a parent-death signal,
so it outlives the control plane. The handle records the session leader's pid and start
time: a pid the kernel handed to another process is never adopted, signalled or killed.
The replica's command runs only once handle.json is written (logshim's `--wait-for-go`): a
control plane killed between starting the process and recording it leaves nothing running
that `list()` cannot find, and so nothing that a restarted control plane cannot stop.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Iterator, Optional

from truss_cli.config import ConfigError, load_config
from truss_cli.config_to_replica import replica_config_for
from truss_cli.controlplane.runtimes import logshim, pids
from truss_cli.controlplane.runtimes.base import (
    CONTROL_TOKEN_FILE,
    CONTROL_URL,
    GONE,
    Artifact,
    BuildError,
    one_line_cause,
    BuildRequest,
    Handle,
    LogLine,
    ObservedStatus,
    ReplicaSpec,
    write_control_token,
)
from truss_cli.controlplane.runtimes.environments import EnvironmentBuildFailed, ProgressCallback
from truss_cli.controlplane.runtimes.logfile import LogFile, read_lines
from truss_cli.custom_server import custom_server_options
from truss_cli.errors import TrussError
from truss_cli.local import replica as local_replica
from truss_cli.local.environments import environments_root
from truss_cli.local.child_env import scrubbed
from truss_cli.local.prepare import prepare_model
from truss_cli.net import local_url
from truss_cli.server import protocol
from truss_cli.server.custom.options import CustomServerOptions
from truss_cli.server.status import STARTING, read_status
from truss_cli.settings import Settings

KIND = "process"
HOST = "127.0.0.1"  # replicas are reached through the gateway on this machine
_POLL_SECONDS = 0.05


class ProcessRuntime:
    kind = KIND
    development_replicas = True

    def __init__(self, settings: Settings):
        self.settings = settings
        self.root = settings.data_dir / "replicas"
        # Shims this object started: reaped here, so an ended one is not left a zombie.
        self._children: dict[int, subprocess.Popen[bytes]] = {}

    # -- builds ---------------------------------------------------------------------------

    def prepare(self, request: BuildRequest) -> Artifact:
        with LogFile(request.build_log) as log:
            log(f"preparing an environment for {request.model_dir}")
            try:
                prepared = prepare_model(request.model_dir, request.config, self.settings, on_progress=log, on_note=log)
            except (TrussError, OSError) as exc:
                cause = getattr(exc, "message", None) or str(exc)
                log(f"build failed: {cause}")
                if getattr(exc, "hint", None):
                    log(f"hint: {exc.hint}")  # type: ignore[attr-defined]
                raise BuildError(one_line_cause(cause) or type(exc).__name__) from None
            log(f"environment ready: {prepared.environment.path}")
        custom = custom_server_options(request.model_dir, request.config)
        return Artifact(
            kind=KIND,
            deployment_id=request.deployment_id,
            reference=str(prepared.environment.path),
            data={
                "python": str(prepared.environment.python),
                "bundle_dir": str(prepared.bundle_dir),
                "model_dir": str(prepared.model_dir),
                "replica_config": str(prepared.replica_config),
                "environment_variables": dict(request.config.environment_variables),
                "custom_server": dataclasses.asdict(custom) if custom else None,
            },
        )

    def environment_for(self, tree_dir: Path, on_progress: ProgressCallback = lambda line: None) -> str:
        """The interpreter of the cached environment for this tree's requirements (contract C3):
        `prepare_model`'s, so a later build of the same tree finds the very environment. uv
        installs from its cache: only packages it never saw are downloaded."""
        try:
            config = load_config(tree_dir).config
            prepared = prepare_model(tree_dir, config, self.settings, on_progress=on_progress, on_note=on_progress)
        except (TrussError, ConfigError, OSError) as exc:
            output = getattr(exc, "message", None) or str(exc)
            if getattr(exc, "hint", None):
                output += f"\nhint: {exc.hint}"  # type: ignore[attr-defined]
            raise EnvironmentBuildFailed(one_line_cause(output) or type(exc).__name__, output) from None
        return str(prepared.environment.python)

    def remove_artifact(self, artifact: Artifact) -> None:
        """Remove the deployment's environment. Environments are a cache keyed by what goes
        into them (`truss_cli.local.environments`), shared by every deployment with the same
        requirements and by `truss run` on this machine: the control plane calls this only
        when none of its deployments uses it any more, and one a process still runs from (a
        `truss run`) is kept. The server bundle and replica configs are small shared files
        and stay."""
        environment = Path(artifact.reference)
        if environment.parent != environments_root(self.settings.cache_dir) or not environment.is_dir():
            return  # not an environment of this cache (or gone already)
        if _runs_from(environment):
            return
        doomed = environment.with_name(f".removing-{environment.name}-{os.getpid()}")
        try:
            os.rename(environment, doomed)  # never half an environment under its name
        except OSError:
            return
        shutil.rmtree(doomed, ignore_errors=True)

    # -- replicas -------------------------------------------------------------------------

    def start(self, spec: ReplicaSpec) -> Handle:
        home = self._home(spec.replica_id)
        home.mkdir(parents=True, mode=0o700)
        local = self._local_spec(spec, home)
        server_command = local.command()
        environment = local.child_environment()
        development = spec.development and local.custom_server is None and spec.tree_dir is not None
        token_file: Optional[Path] = None
        if development:
            # A private copy: the replica patches its model directory in place.
            model_dir = home / "model"
            shutil.copytree(spec.tree_dir, model_dir, symlinks=True)  # type: ignore[arg-type]
            # On the environment of its start tree, which a requirements patch may have
            # changed since the build (cached: a lookup unless it was never made).
            local = dataclasses.replace(local, model_dir=model_dir, python=self._start_python(spec, home, local.python))
            local = _with_tree_config(local, spec, home)
            server_command = _development_command(local.command())
            environment = local.child_environment()
            token, token_file = write_control_token(home)
            environment[protocol.CONTROL_TOKEN_ENV] = token  # never on the command line
        command = [
            sys.executable, "-I", logshim.__file__,
            "--log", str(home / "replica.log"), "--exit-file", str(home / "exit"), "--wait-for-go", "--",
            *server_command, *_secrets_arguments(local),
        ]  # fmt: skip
        shim = subprocess.Popen(
            command,
            env=environment,
            cwd=local.model_dir,
            stdin=subprocess.PIPE,  # the go (logshim --wait-for-go), once the handle is on disk
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # its own session: a stop signals the whole group, nothing else
        )
        self._children[shim.pid] = shim
        handle = Handle(
            KIND, spec.deployment_id, spec.replica_id, url=None,
            data={"pid": shim.pid, "started": pids.start_time(shim.pid), "dir": str(home)},
        )  # fmt: skip
        try:
            _write_handle(home, handle)
        except BaseException:
            shim.stdin.close()  # type: ignore[union-attr]  # no go: it exits without starting
            raise
        # Only now may the replica run: a control plane killed before this line leaves a shim
        # that exits instead of a replica that no handle names, which nothing would ever stop.
        _let_go(shim)
        # The URL exists once the server has bound its port (before load() runs): moments.
        while self._alive(handle):
            status = read_status(home / "status.json")
            if status is not None and status.replica_id == spec.replica_id and status.port:
                if development and not status.control_port:
                    time.sleep(_POLL_SECONDS)
                    continue
                data = dict(handle.data)
                if development:
                    data[CONTROL_URL] = local_url(HOST, status.control_port)  # type: ignore[arg-type]
                    data[CONTROL_TOKEN_FILE] = str(token_file)
                handle = dataclasses.replace(handle, url=local_url(HOST, status.port), data=data)
                _write_handle(home, handle)
                break
            time.sleep(_POLL_SECONDS)
        return handle

    def status(self, handle: Handle) -> ObservedStatus:
        home = Path(handle.data["dir"])
        if not self._alive(handle):
            return ObservedStatus(GONE, exit_code=_exit_code(home))
        status = read_status(home / "status.json")
        if status is None or status.replica_id != handle.replica_id:
            return ObservedStatus(STARTING)
        return ObservedStatus(status.phase, status.summary, status.traceback, tree_hash=status.tree_hash)

    def stop(self, handle: Handle, grace: float = protocol.STOP_GRACE_SECONDS) -> None:
        pid = int(handle.data["pid"])
        if self._alive(handle):
            # The session's group: the server drains; logshim records its last lines.
            _signal_group(pid, signal.SIGTERM)
            deadline = time.monotonic() + grace
            while self._alive(handle) and time.monotonic() < deadline:
                time.sleep(_POLL_SECONDS)
            if self._alive(handle):
                _signal_group(pid, signal.SIGKILL)
                while self._alive(handle):
                    time.sleep(_POLL_SECONDS)
        home = Path(handle.data["dir"])
        shutil.rmtree(home / "secrets", ignore_errors=True)
        shutil.rmtree(home / "model", ignore_errors=True)  # a development replica's copy of its tree
        for name in ("handle.json", "status.json", "control_token"):
            (home / name).unlink(missing_ok=True)

    def list(self) -> list[Handle]:
        found = []
        for path in sorted(self.root.glob("*/handle.json")):
            try:
                found.append(Handle.from_dict(json.loads(path.read_text(encoding="utf-8"))))
            except (OSError, ValueError, KeyError):
                continue  # being written (start) or removed (stop) right now
        return found

    def logs(self, handle: Handle, since: Optional[datetime] = None, follow: bool = False) -> Iterator[LogLine]:
        path = Path(handle.data["dir"]) / "replica.log"
        return read_lines(path, since, follow, is_alive=lambda: self._alive(handle))

    # -- helpers --------------------------------------------------------------------------

    def _start_python(self, spec: ReplicaSpec, home: Path, built: Path) -> Path:
        """A development replica's interpreter: its start tree's environment; the built one
        when that cannot be made (the replica then fails on the missing package and says so,
        and the control plane starts the next one at the running tree)."""
        try:
            return Path(self.environment_for(Path(spec.tree_dir or "")))
        except BuildError as exc:
            with LogFile(home / "replica.log") as log:
                log(f"the start tree's environment could not be made ({exc}); starting on the built one")
            return built

    def _home(self, replica_id: str) -> Path:
        return self.root / replica_id

    def _alive(self, handle: Handle) -> bool:
        pid = int(handle.data["pid"])
        child = self._children.get(pid)
        if child is not None and child.poll() is not None:
            del self._children[pid]
        return pids.is_same_process(pid, handle.data.get("started"))

    def _local_spec(self, spec: ReplicaSpec, home: Path) -> local_replica.ReplicaSpec:
        data = spec.artifact.data
        custom = CustomServerOptions(**data["custom_server"]) if data.get("custom_server") else None
        variables = {**data.get("environment_variables", {}), **spec.environment}
        # Files, never variables (a process's environment is readable in /proc by its user);
        # a custom server's replica hands this same directory on (see `_secrets_arguments`).
        variables[protocol.SECRETS_DIR_ENV] = str(_write_secrets(home / "secrets", spec.secrets))
        # Secrets come from the spec alone, never from the control plane's own environment.
        inherited = {
            key: value
            for key, value in scrubbed(self.settings.environ, also=(protocol.SECRETS_DIR_ENV,)).items()
            if not key.startswith(protocol.SECRET_ENV_PREFIX)
        }
        return local_replica.ReplicaSpec(
            python=Path(data["python"]),
            bundle_dir=Path(data["bundle_dir"]),
            model_dir=Path(data["model_dir"]),
            replica_config=Path(data["replica_config"]),
            status_file=home / "status.json",
            environ=inherited,
            config_variables=variables,
            host=HOST,
            port=0,
            replica_id=spec.replica_id,
            die_with_parent=False,
            expose_errors=spec.expose_errors,
            stay_up_on_load_failure=spec.stay_up_on_load_failure,
            custom_server=custom,
        )


def _with_tree_config(local: local_replica.ReplicaSpec, spec: ReplicaSpec, home: Path) -> local_replica.ReplicaSpec:
    """A development replica runs with its start tree's config.yaml, not the build's: one
    started after a patch of config.yaml (a wake, a crash, a control-plane restart) gets the
    patched environment variables and runtime settings. A tree with external_data keeps the
    build's replica config (its data_dir is the build's data view); a config.yaml that does not
    load keeps the build's too (the replica then serves what was built, and says nothing new)."""
    try:
        config = load_config(local.model_dir).config
    except ConfigError:
        return local
    if config.external_data:
        return local
    replica_config = home / "replica_config.json"
    # It may hold secret values written in config.yaml (as `truss run` serves them): 0600.
    descriptor = os.open(replica_config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as output:
        output.write(replica_config_for(config, secret_values=True).to_json())
    variables = {**{key: str(value) for key, value in config.environment_variables.items()}, **spec.environment,
                 protocol.SECRETS_DIR_ENV: local.config_variables[protocol.SECRETS_DIR_ENV]}
    return dataclasses.replace(local, replica_config=replica_config, config_variables=variables)


def _write_secrets(directory: Path, secrets: dict[str, str]) -> Path:
    directory.mkdir(mode=0o700)
    for name, value in secrets.items():
        if not name or "/" in name or name.startswith("."):
            raise TrussError(f"secret name {name!r}: not a file name")  # it would leave the directory
        descriptor = os.open(directory / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as output:
            output.write(value)
    return directory


def _secrets_arguments(local: local_replica.ReplicaSpec) -> list[str]:
    """A custom server replica's `--secrets-path`: the replica's own secrets directory, which
    it then uses as it is (it names the directory TRUSS_SECRETS_DIR names) instead of copying
    the values into a temporary directory of its own. So the only copy is under the replica's
    home, and `stop` removes it even after a SIGKILL, when the replica itself cleans up nothing."""
    if local.custom_server is None or not local.custom_server.secrets:
        return []
    return ["--secrets-path", local.config_variables[protocol.SECRETS_DIR_ENV]]


def _development_command(server_command: list[str]) -> list[str]:
    """The model server's command as a development replica's: the control layer's module
    takes the same arguments, plus its control port (0: any, reported in the status)."""
    command = list(server_command)
    command[command.index("truss_cli.server")] = "truss_cli.server.control"
    return [*command, "--control-port", "0"]


def _write_handle(home: Path, handle: Handle) -> None:
    temporary = home / "handle.json.tmp"
    temporary.write_text(json.dumps(handle.to_dict()), encoding="utf-8")
    os.replace(temporary, home / "handle.json")


def _let_go(shim: subprocess.Popen[bytes]) -> None:
    assert shim.stdin is not None
    try:
        shim.stdin.write(b"g")
        shim.stdin.close()
    except BrokenPipeError:
        pass  # it ended already (status says so)


def _exit_code(home: Path) -> Optional[int]:
    try:
        return int((home / "exit").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # killed together with logshim (SIGKILL of the group)


def _runs_from(environment: Path) -> bool:
    """Whether a process on this machine runs a program of `environment` (its command line's
    first word is under it, as a replica's or `truss run`'s `<env>/bin/python` is)."""
    prefix = str(environment).encode() + b"/"
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if cmdline.read_bytes().startswith(prefix):
                return True
        except OSError:
            continue  # ended meanwhile, or not ours to read
    return False


def _signal_group(pid: int, signum: int) -> None:
    try:
        os.killpg(pid, signum)
    except ProcessLookupError:
        pass
