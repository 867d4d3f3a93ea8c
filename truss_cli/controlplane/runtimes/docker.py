"""The Docker runtime: a replica is a container of the image `truss_cli.image` builds.

The image is tagged per deployment (`truss-<model>:<deployment>`), something a registry
could hold and a cluster pull. Containers carry labels naming the deployment, the replica
and this runtime's data dir, so `list()` finds them again after a control-plane restart;
the engine picks the host port. Secret values never enter the image, the container's
environment (`docker inspect` shows it) or a log: they are files copied into the created
container before it starts, gone with the container, named by TRUSS_SECRETS_DIR. A model
server finds them in `/run/truss/secrets` (its user's, files 0400); a custom server in
`/secrets`, where Truss puts them and its replica hands them on as they are (owned by the
user the image runs as: `docker_server.run_as_user_id`, the server's user, or a `no_build`
base image's own; files 0600, directory 0700, as the replica itself would write them).
On stop the container's log is kept under `<data_dir>/replicas/<replica_id>/replica.log`.

A development replica (ReplicaSpec.development) is a container of the same image running
`python -m truss_cli.server.control` on a copy of its start tree, its control API published
on the host's loopback: `docker_development` says how. A patch of its requirements or
system_packages is installed into the serving container (`provision`, then the replica
switches to the new environment); other changes of what the image holds (python_version,
base_image, ...) are still rebuilds.
"""

from __future__ import annotations

import hashlib
import io
import json
import platform
import re
import sys
import tarfile
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Iterator, Optional

import docker
import docker.errors
import httpx

from truss_cli.controlplane.runtimes import docker_development
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
from truss_cli.controlplane.runtimes.container_user import container_user
from truss_cli.controlplane.runtimes.environments import (
    EnvironmentBuildFailed,
    ProgressCallback,
    ProvisionUnsupported,
    ReplicaUnavailable,
)
from truss_cli.controlplane.runtimes.logfile import LogFile, read_lines
from truss_cli.controlplane.runtimes.logshim import format_line
from truss_cli.errors import TrussError
from truss_cli.config import ConfigError, TrussConfig, load_config
from truss_cli.image.build import BuildListener, BuildStep, build_image
from truss_cli.image.container import HOST, SECRETS_MOUNT, RunningContainer, published_port, start_container
from truss_cli.image.engine import connect
from truss_cli.image.limits import ContainerLimits, container_limits
from truss_cli.image.plan import SERVER_PORT, USER_ID, VENV_PYTHON, plan_image, slug
from truss_cli.net import local_url
from truss_cli.server import protocol
from truss_cli.server.control.provision import RESULT_PREFIX
from truss_cli.server.custom.options import secret_name_problem
from truss_cli.server.custom.secret_files import SECRETS_PATH_IN_IMAGE
from truss_cli.server.status import STARTING
from truss_cli.settings import Settings

KIND = "docker"
LABEL_DEPLOYMENT = "truss.deployment-id"
LABEL_REPLICA = "truss.replica-id"
LABEL_DATA_DIR = "truss.data-dir"  # one engine may serve several control planes
# On a development container that provisions itself (its image's server has provision.py).
LABEL_PROVISIONS = "truss.provisions"
# Artifact data: the image's server bundle installs into a running development container.
# An image built by an older control plane lacks it: its containers run the old command and
# its requirements / system_packages patches are rebuilds (which give an image that has it).
PROVISIONS = "provisions"
REQUIREMENTS_DIGEST = "requirements_digest"  # artifact data: the image's requirement lines (docker_development)
_TAG_TEXT = re.compile(r"[^A-Za-z0-9_.-]+")


class _LogListener(BuildListener):
    def __init__(self, log: LogFile):
        self.log = log

    def on_note(self, text: str) -> None:
        self.log(text)

    def on_step(self, step: BuildStep) -> None:
        self.log(f"Step {step.number}/{step.total} : {step.instruction}")

    def on_line(self, text: str) -> None:
        self.log(text)


class DockerRuntime:
    kind = KIND
    development_replicas = True  # see docker_development

    def __init__(self, settings: Settings, client: Optional[docker.APIClient] = None):
        self.settings = settings
        self.client = client or connect(settings.environ)
        self.root = settings.data_dir / "replicas"
        self._lent_uv: set[str] = set()  # containers holding this machine's uv (in memory: lent again after a restart)
        self._engine_platform: Optional[tuple[str, str]] = None

    # -- builds ---------------------------------------------------------------------------

    def prepare(self, request: BuildRequest) -> Artifact:
        with LogFile(request.build_log) as log:
            try:
                plan = plan_image(request.model_dir, self.settings)
                for note in plan.notes:
                    log(note)
                tag = f"truss-{slug(plan.model_name)}:{_tag_text(request.deployment_id)}"
                result = build_image(self.client, plan, self.settings, tag=tag, listener=_LogListener(log))
            except (TrussError, ConfigError) as exc:
                cause = str(getattr(exc, "message", None) or exc)
                log(f"build failed: {cause}")
                if getattr(exc, "hint", None):
                    log(f"hint: {exc.hint}")  # type: ignore[union-attr]
                if cause.startswith("Base image "):  # the control plane's own setting, given at its start
                    log("hint: a control plane takes its base image from TRUSS_BASE_IMAGE when it starts "
                        "(`TRUSS_BASE_IMAGE=IMAGE truss server start`), or runs models without images "
                        "(`truss server start --runtime process`)")
                raise BuildError(one_line_cause(cause) or type(exc).__name__) from None
            log(f"image {result.tag} ({result.image_id[7:19]}){' reused' if result.reused else ' built'}")
        limits = container_limits(request.config)
        return Artifact(
            kind=KIND,
            deployment_id=request.deployment_id,
            reference=result.tag,
            data={
                "image_id": result.image_id,
                "tag": result.tag,
                "model_name": plan.model_name,
                "custom_server": plan.custom_server is not None,
                PROVISIONS: True,
                REQUIREMENTS_DIGEST: docker_development.requirements_digest(plan.user_requirements.splitlines(),
                                                                            plan.user_constraints.splitlines()),
                "nano_cpus": limits.nano_cpus,
                "memory_bytes": limits.memory_bytes,
            },
        )

    def remove_artifact(self, artifact: Artifact) -> None:
        """Untags the deployment's image; the engine deletes it once no tag or container uses it."""
        try:
            self.client.remove_image(artifact.data["tag"])
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            if exc.status_code != 409:  # 409: a container still uses it; it goes with the last one
                raise

    # -- replicas -------------------------------------------------------------------------

    def start(self, spec: ReplicaSpec) -> Handle:
        data = spec.artifact.data
        environment = dict(spec.environment)
        directory = SECRETS_PATH_IN_IMAGE if data["custom_server"] else SECRETS_MOUNT
        if spec.secrets:
            environment[protocol.SECRETS_DIR_ENV] = directory  # a path; the values are files
        tree_config = docker_development.tree_config(spec.tree_dir, bool(data["custom_server"])) if spec.development else None
        development = tree_config is not None
        provisions = development and bool(data.get(PROVISIONS))
        token_file: Optional[Path] = None
        token = ""
        if tree_config is not None:
            home = self.root / spec.replica_id
            home.mkdir(parents=True, exist_ok=True, mode=0o700)
            token, token_file = write_control_token(home)
            environment = {**docker_development.environment(tree_config), **environment}

        def before_start(container_id: str) -> None:
            if spec.secrets:
                self._copy_secrets(container_id, spec.secrets, directory)
            if tree_config is not None:
                self._copy_development_tree(container_id, Path(spec.tree_dir), tree_config, token)  # type: ignore[arg-type]
                if provisions and docker_development.needs_installer(Path(spec.tree_dir), tree_config,  # type: ignore[arg-type]
                                                                     data.get(REQUIREMENTS_DIGEST)):
                    self._lend_uv(container_id)

        container = start_container(
            self.client,
            data["image_id"],
            data["model_name"],
            port=0,
            environment=environment,
            limits=ContainerLimits(data.get("nano_cpus"), data.get("memory_bytes")),
            expose_errors=spec.expose_errors,
            replica_id=spec.replica_id,
            labels={LABEL_DEPLOYMENT: spec.deployment_id, LABEL_REPLICA: spec.replica_id, LABEL_DATA_DIR: self._scope(),
                    **({LABEL_PROVISIONS: "1"} if provisions else {})},
            before_start=before_start if spec.secrets or development else None,
            command=docker_development.command(provisions) if development else None,
            working_dir=docker_development.TREE_DIR if development else None,  # as the process runtime's cwd
            also_publish=(docker_development.CONTROL_PORT,) if development else (),
            # Root until the start tree's packages are installed; the replica runs as the server's user.
            user="root" if provisions else None,
        )
        handle_data: dict = {"container_id": container.id}
        if development:
            control_port = published_port(self.client, container.id, docker_development.CONTROL_PORT)
            handle_data[CONTROL_URL] = local_url(HOST, control_port)
            handle_data[CONTROL_TOKEN_FILE] = str(token_file)
            handle_data[PROVISIONS] = provisions
        return Handle(KIND, spec.deployment_id, spec.replica_id, container.url, handle_data)

    def status(self, handle: Handle) -> ObservedStatus:
        try:
            state = self.client.inspect_container(handle.data["container_id"])["State"]
        except docker.errors.NotFound:
            return ObservedStatus(GONE)
        if not state["Running"] or handle.url is None:
            return ObservedStatus(GONE, exit_code=state.get("ExitCode"))
        container = RunningContainer(self.client, handle.data["container_id"], "", handle.url, handle.replica_id)
        with httpx.Client(timeout=2.0, trust_env=False) as client:
            status = container.status(client)  # None unless the server answering carries the replica id
        if status is None:
            return ObservedStatus(STARTING)
        return ObservedStatus(status.phase, status.summary, status.traceback, tree_hash=status.tree_hash)

    def stop(self, handle: Handle, grace: float = protocol.STOP_GRACE_SECONDS) -> None:
        container_id = handle.data["container_id"]
        try:
            self.client.stop(container_id, timeout=int(grace))  # SIGTERM to the server, SIGKILL after
            self._keep_log(handle)
            self.client.remove_container(container_id, force=True)
        except docker.errors.NotFound:
            pass
        (self.root / handle.replica_id / "control_token").unlink(missing_ok=True)  # a development replica's
        self._lent_uv.discard(container_id)

    def list(self) -> list[Handle]:
        found = []
        for summary in self.client.containers(all=True, filters={"label": f"{LABEL_DATA_DIR}={self._scope()}"}):
            labels = summary["Labels"]
            url = None
            data: dict = {"container_id": summary["Id"]}
            for port in summary.get("Ports") or []:
                if port.get("PrivatePort") == int(SERVER_PORT) and port.get("PublicPort"):
                    url = local_url(HOST, int(port["PublicPort"]))
                if port.get("PrivatePort") == docker_development.CONTROL_PORT and port.get("PublicPort"):
                    data[CONTROL_URL] = local_url(HOST, int(port["PublicPort"]))
                    data[CONTROL_TOKEN_FILE] = str(self.root / labels[LABEL_REPLICA] / "control_token")
                    data[PROVISIONS] = labels.get(LABEL_PROVISIONS) == "1"
            found.append(Handle(KIND, labels[LABEL_DEPLOYMENT], labels[LABEL_REPLICA], url, data))
        return found

    def logs(self, handle: Handle, since: Optional[datetime] = None, follow: bool = False) -> Iterator[LogLine]:
        try:
            chunks = self.client.logs(handle.data["container_id"], stream=True, follow=follow, timestamps=True, since=since)
        except docker.errors.NotFound:
            return read_lines(self._log_path(handle), since)  # stopped: what was kept
        return _docker_lines(chunks, since)

    def provision(self, handle: Handle, tree_dir: Path, on_progress: ProgressCallback = lambda line: None) -> str:
        """Install the tree's system packages and requirements into the serving development
        container (`docker exec --user root`, server/control/provision.py) -> the interpreter
        of the tree's environment in the container (the image's venv when its requirements
        are the image's). Nothing the serving generation imports is changed. Raises
        EnvironmentBuildFailed with the installer's output, ProvisionUnsupported when the
        container cannot (then the change is a rebuild), ReplicaUnavailable when it is gone
        or stopped."""
        if not handle.data.get(PROVISIONS):
            raise ProvisionUnsupported("the development container's image predates installing into a running "
                                       "container (built by an older control plane)")
        try:
            spec = docker_development.provision_spec(tree_dir, load_config(tree_dir).config)
        except (TrussError, ConfigError, OSError) as exc:
            output = str(getattr(exc, "message", None) or exc)
            raise EnvironmentBuildFailed(one_line_cause(output) or type(exc).__name__, output) from None
        container_id = handle.data["container_id"]
        name = f"provision-{hashlib.sha256(spec).hexdigest()[:16]}.json"
        try:
            if container_id not in self._lent_uv:
                self._lend_uv(container_id)
            self.client.put_archive(container_id, docker_development.DEVELOPMENT_DIR, docker_development.spec_archive(name, spec))
            run = self.client.exec_create(container_id, [VENV_PYTHON, "-m", "truss_cli.server.control.provision",
                                                         f"{docker_development.DEVELOPMENT_DIR}/{name}"], user="root")
            lines: list[str] = []
            for line in _exec_lines(self.client.exec_start(run["Id"], stream=True)):
                lines.append(line)
                if not line.startswith(RESULT_PREFIX):
                    on_progress(line)
            code = self.client.exec_inspect(run["Id"]).get("ExitCode")
        except docker.errors.APIError as exc:  # gone (404) or stopped (409): the reconciler replaces it
            if exc.status_code in (404, 409):
                raise ReplicaUnavailable(f"the development container is not running ({exc.explanation or exc})") from None
            raise EnvironmentBuildFailed(f"the container cannot be provisioned: {exc.explanation or exc}", str(exc)) from None
        if code != 0 or not lines or not lines[-1].startswith(RESULT_PREFIX):
            tail = "\n".join(lines[-25:])
            summary = next((line for line in reversed(lines) if line.startswith("provision failed: ")), "")
            raise EnvironmentBuildFailed(summary.removeprefix("provision failed: ") or f"the provisioner exited {code}", tail)
        return str(json.loads(lines[-1][len(RESULT_PREFIX):])["python"])

    # -- helpers --------------------------------------------------------------------------

    def _scope(self) -> str:
        return str(self.settings.data_dir.resolve())

    def _log_path(self, handle: Handle) -> Path:
        return self.root / handle.replica_id / "replica.log"

    def _keep_log(self, handle: Handle) -> None:
        path = self._log_path(handle)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "ab") as output:
            for line in self.logs(handle):
                output.write(format_line(line.at, line.text))

    def _copy_development_tree(self, container_id: str, tree_dir: Path, config: TrussConfig, token: str) -> None:
        # Spooled: a tree with a large data/ goes through a temporary file, not memory.
        with tempfile.SpooledTemporaryFile(max_size=16 * 1024 * 1024) as archive:
            docker_development.write_archive(archive, tree_dir, config, token)
            archive.seek(0)
            self.client.put_archive(container_id, docker_development.PARENT_DIR, archive)

    def _lend_uv(self, container_id: str) -> None:
        """Copy this machine's uv into the container (provision.LENT_UV) when the engine runs
        this architecture: installing then needs no download of uv itself (~8 s with pip
        here). Otherwise the container fetches one; nothing fails either way."""
        uv = _local_uv()
        if uv is None or not self._engine_runs_this_machine():
            return
        with tempfile.SpooledTemporaryFile(max_size=16 * 1024 * 1024) as archive:
            docker_development.uv_archive(archive, uv)
            archive.seek(0)
            self.client.put_archive(container_id, docker_development.PARENT_DIR, archive)
        self._lent_uv.add(container_id)

    def _engine_runs_this_machine(self) -> bool:
        if self._engine_platform is None:
            version = self.client.version()
            self._engine_platform = (str(version.get("Os", "")).lower(), str(version.get("Arch", "")).lower())
        machine = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine().lower(), platform.machine().lower())
        return self._engine_platform == (sys.platform, machine)

    def _copy_secrets(self, container_id: str, secrets: dict[str, str], directory: str) -> None:
        """Put `secrets` into the created container as files of `directory`, readable by the
        user it runs as alone (no one else in the container can read them)."""
        if directory == SECRETS_MOUNT:
            uid = gid = USER_ID  # a model server's image always runs as the server's user
            modes = (0o500, 0o400)
        else:
            uid, gid = container_user(self.client, container_id)
            modes = (0o700, 0o600)  # what the custom server's replica writes, wherever it runs
        self.client.put_archive(container_id, "/", _secrets_archive(directory, secrets, uid, gid, *modes))


def _secrets_archive(directory: str, secrets: dict[str, str], uid: int, gid: int, directory_mode: int, file_mode: int) -> bytes:
    """A tar of `directory` (absolute) holding one file per secret, owned by uid:gid. Its
    parents below the top level are root's, 0755 (a top-level directory such as /run keeps
    the image's owner and mode)."""
    path = PurePosixPath(directory.lstrip("/"))
    archive = io.BytesIO()
    now = time.time()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        for parent in reversed(path.parents[:-2]):
            tar.addfile(_entry(str(parent), tarfile.DIRTYPE, 0o755, 0, 0, now))
        tar.addfile(_entry(str(path), tarfile.DIRTYPE, directory_mode, uid, gid, now))
        for name, value in secrets.items():
            if secret_name_problem(name):
                raise TrussError(f"secret name {name!r}: not a file name")
            body = value.encode("utf-8")
            entry = _entry(f"{path}/{name}", tarfile.REGTYPE, file_mode, uid, gid, now)
            entry.size = len(body)
            tar.addfile(entry, io.BytesIO(body))
    return archive.getvalue()


def _entry(name: str, kind: bytes, mode: int, uid: int, gid: int, mtime: float) -> tarfile.TarInfo:
    entry = tarfile.TarInfo(name)
    entry.type, entry.mode, entry.uid, entry.gid, entry.mtime = kind, mode, uid, gid, mtime
    return entry


def _tag_text(text: str) -> str:
    return (_TAG_TEXT.sub("-", text).lstrip(".-") or "deployment")[:128]


def _local_uv() -> Optional[Path]:
    """The uv binary this control plane installs with (the `uv` package's), if any."""
    try:
        from uv import find_uv_bin

        return Path(find_uv_bin())
    except (ImportError, FileNotFoundError):
        return None


def _exec_lines(chunks: Iterator[bytes]) -> Iterator[str]:
    pending = b""
    for chunk in chunks:
        pending += chunk
        *complete, pending = pending.split(b"\n")
        for raw in complete:
            yield raw.decode("utf-8", "replace").rstrip("\r")
    if pending:
        yield pending.decode("utf-8", "replace")


def _docker_lines(chunks: Iterator[bytes], since: Optional[datetime]) -> Iterator[LogLine]:
    pending = b""
    for chunk in chunks:
        pending += chunk
        *complete, pending = pending.split(b"\n")
        for raw in complete:
            line = _parse_docker_line(raw.decode("utf-8", "replace"))
            if since is None or line.at >= since:
                yield line
    if pending:
        yield _parse_docker_line(pending.decode("utf-8", "replace"))


def _parse_docker_line(raw: str) -> LogLine:
    """`2024-05-01T12:00:00.123456789Z text` (RFC 3339 with nanoseconds) -> LogLine."""
    stamp, _, text = raw.rstrip("\r").partition(" ")
    seconds, _, fraction = stamp.rstrip("Z").partition(".")
    try:
        at = datetime.strptime(seconds, "%Y-%m-%dT%H:%M:%S").replace(
            tzinfo=timezone.utc, microsecond=int((fraction + "000000")[:6])
        )
    except ValueError:
        return LogLine(datetime.now(timezone.utc), raw)
    return LogLine(at, text)
