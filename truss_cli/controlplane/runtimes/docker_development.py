"""A development replica in a container (docs/live-reload.md): what goes into it and how it runs.

The container runs the deployment's image (built from the deployment's tree, as for a
published deployment), but serves a private copy of the start tree the reconciler hands
over (`ReplicaSpec.tree_dir`), copied into the created container before it starts, in the
tree's own layout (the replica patches it in place and hashes it as the control plane
does), owned by the server's user. Copied, not bind-mounted: it works with an engine on
another machine, needs no chown on the host, and goes with the container.

The control API listens on the container's address at CONTROL_PORT, which the engine
publishes on the host's loopback at a port it picks: only this machine reaches it, and
every request needs the token. The token is a file copied in beside the tree (0400), read
with `--control-token-file`: it is in no environment variable, command line or log, so
`docker inspect` does not show it. The control plane keeps its copy in
`<data_dir>/replicas/<replica_id>/control_token` (0600), as the process runtime does.

The replica config and environment variables come from the start tree's config.yaml, so a
replica started after a patch of config.yaml (a wake, a crash) runs with the patched config.
Variables the image sets (config.yaml's at build time) stay set unless the tree overrides
them: a variable removed by a patch is still in the environment of a replica started later,
until the next rebuild.

The tree's `system_packages` and requirements (docs/live-reload.md, "Task K") are installed in
the container, not by a rebuild: the container starts as root with `--provision SPEC --run-as
USER_ID` (server/control/provision.py installs what the start tree needs and the image lacks,
then runs the replica as the server's user), and a patch that changes them is provisioned
into the serving container through `docker exec --user root` (DockerRuntime.provision) with
the same kind of spec. A container started later (crash, wake) therefore replays the
installs of its start tree: no image is built, at the cost of the installs' time at start.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import time
from pathlib import Path
from typing import IO, Optional

from truss_cli.config import ConfigError, TrussConfig, load_config
from truss_cli.config_to_replica import replica_config_for
from truss_cli.errors import TrussError
from truss_cli.image.plan import SERVER_PORT, USER_ID, VENV_PYTHON
from truss_cli.requirements import resolve_requirements

# Under /opt/truss, which every image of a model server has (the server, the venv).
PARENT_DIR = "/opt/truss"
DEVELOPMENT_DIR = f"{PARENT_DIR}/development"
TREE_DIR = f"{DEVELOPMENT_DIR}/model"
REPLICA_CONFIG_PATH = f"{DEVELOPMENT_DIR}/replica.json"
TOKEN_PATH = f"{DEVELOPMENT_DIR}/control_token"
PROVISION_SPEC_PATH = f"{DEVELOPMENT_DIR}/provision.json"  # the start tree's (read as root at start)
CONTROL_PORT = SERVER_PORT + 1  # inside the container; published on the host's loopback


def tree_config(tree_dir: Optional[str], custom_server: bool) -> Optional[TrussConfig]:
    """The start tree's config when it can run as a development replica here; None when not
    (a custom server has no control API; external_data's downloads are in the image's
    /app/data, not in the tree's data_dir; a config.yaml that does not load). Such a replica
    runs as a published one does, and every patch is synced by a rebuild."""
    if custom_server or not tree_dir or not Path(tree_dir).is_dir():
        return None
    try:
        config = load_config(Path(tree_dir)).config
    except ConfigError:
        return None
    return None if config.external_data else config


def command(provisions: bool = True) -> list[str]:
    """The container's command; `provisions`: it starts as root, installs what the start tree
    needs (PROVISION_SPEC_PATH), then runs the replica as USER_ID (an image whose server
    predates provision.py gets the command without it)."""
    first = ["--provision", PROVISION_SPEC_PATH, "--run-as", str(USER_ID)] if provisions else []
    return [
        VENV_PYTHON, "-m", "truss_cli.server.control", *first,
        TREE_DIR,
        "--replica-config", REPLICA_CONFIG_PATH,
        "--host", "0.0.0.0", "--port", str(SERVER_PORT),
        "--control-host", "0.0.0.0", "--control-port", str(CONTROL_PORT),
        "--control-token-file", TOKEN_PATH,
    ]  # fmt: skip


def environment(config: TrussConfig) -> dict[str, str]:
    """config.yaml's environment_variables of the tree the replica starts at."""
    return {key: str(value) for key, value in config.environment_variables.items()}


def provision_spec(tree_dir: Path, config: TrussConfig) -> bytes:
    """What server/control/provision.py installs for this tree: its system packages and its
    resolved requirement lines (as an image build writes them). Raises TrussError /
    ConfigError for a requirements file that does not resolve."""
    resolved = resolve_requirements(tree_dir, config)
    return json.dumps({"format": 1, "system_packages": list(config.system_packages),
                       "requirements": resolved.requirements, "constraints": resolved.constraints,
                       "install_as": USER_ID}).encode("utf-8")


def uv_archive(out: IO[bytes], uv: Path) -> None:
    """A tar, extracted at PARENT_DIR, of the control plane's uv binary at
    provision.LENT_UV (root's, 0755): the container installs with it instead of fetching one."""
    now = time.time()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for directory in ("envs", "envs/.uv-lent"):
            entry = _entry(directory, tarfile.DIRTYPE, 0o755, now)
            entry.uid = entry.gid = 0
            tar.addfile(entry)
        entry = tar.gettarinfo(str(uv), arcname="envs/.uv-lent/uv")
        entry.uid = entry.gid = 0
        entry.uname = entry.gname = ""
        entry.mode = 0o755
        with open(uv, "rb") as binary:
            tar.addfile(entry, binary)


def requirements_digest(requirements: list[str], constraints: list[str]) -> str:
    """Names a set of resolved requirement lines: the image's (artifact data) against a tree's."""
    return hashlib.sha256(json.dumps([requirements, constraints]).encode("utf-8")).hexdigest()


def needs_installer(tree_dir: Path, config: TrussConfig, image_digest: Optional[str]) -> bool:
    """Whether a container starting at this tree installs Python requirements at start: the
    tree's differ from the image's (`image_digest`, None: unknown). The docker runtime then
    lends it uv before it starts (0.3 s of copying, not paid by a start with nothing to do)."""
    try:
        resolved = resolve_requirements(tree_dir, config)
    except (TrussError, OSError):
        return False
    return requirements_digest(resolved.requirements, resolved.constraints) != image_digest


def spec_archive(name: str, spec: bytes) -> bytes:
    """A tar of one spec file `name` for DEVELOPMENT_DIR (root reads it; 0600, the server's user's)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        entry = _entry(name, tarfile.REGTYPE, 0o600, time.time())
        entry.size = len(spec)
        tar.addfile(entry, io.BytesIO(spec))
    return out.getvalue()


def write_archive(out: IO[bytes], tree_dir: Path, config: TrussConfig, token: str) -> None:
    """A tar, extracted at PARENT_DIR, of DEVELOPMENT_DIR: the tree (modes kept), its replica
    config (it may hold secret values written in config.yaml: 0600), its provision spec (0600)
    and the token (0400), all the server's user's; the directory 0700, so no other user of the
    container reads them."""
    replica = replica_config_for(config, secret_values=True).to_json().encode("utf-8")
    try:
        spec = provision_spec(tree_dir, config)
    except (TrussError, OSError):  # requirements that do not resolve: the image's environment, as it is
        spec = json.dumps({"format": 1, "system_packages": list(config.system_packages)}).encode("utf-8")
    now = time.time()
    base = Path(DEVELOPMENT_DIR).name

    def owned(entry: tarfile.TarInfo) -> tarfile.TarInfo:
        entry.uid = entry.gid = USER_ID
        entry.uname = entry.gname = ""
        return entry

    with tarfile.open(fileobj=out, mode="w") as tar:
        tar.addfile(_entry(base, tarfile.DIRTYPE, 0o700, now))
        tar.add(tree_dir, arcname=f"{base}/{Path(TREE_DIR).name}", recursive=True, filter=owned)
        for name, body, mode in ((Path(REPLICA_CONFIG_PATH).name, replica, 0o600),
                                 (Path(PROVISION_SPEC_PATH).name, spec, 0o600),
                                 (Path(TOKEN_PATH).name, token.encode("utf-8"), 0o400)):
            entry = _entry(f"{base}/{name}", tarfile.REGTYPE, mode, now)
            entry.size = len(body)
            tar.addfile(entry, io.BytesIO(body))


def _entry(name: str, kind: bytes, mode: int, mtime: float) -> tarfile.TarInfo:
    entry = tarfile.TarInfo(name)
    entry.type, entry.mode, entry.uid, entry.gid, entry.mtime = kind, mode, USER_ID, USER_ID, mtime
    return entry
