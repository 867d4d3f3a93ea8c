"""Provision a development container for its tree: the tree's `system_packages` by apt and
its requirements in an environment of their own, without rebuilding the image
(docs/live-reload.md, "Task K"). Stdlib + subprocess only: this runs in the container, on the
image's interpreter, before the server (or beside it) and as root (apt needs it).

Run two ways, with the same spec, so a container started later comes up as the patched one
was:
- `python -m truss_cli.server.control.provision SPEC`, by the docker runtime through `docker
  exec --user root` into a serving container when a patch changes the requirements or adds
  system packages. The last line of its output is `PROVISIONED {"python": ...}`; a failure
  exits 1 with the installer's output.
- `python -m truss_cli.server.control --provision SPEC --run-as UID ...` as the container's
  command (started as root): provisions, drops to UID, and execs the development replica on
  the environment's interpreter (`start_replica`).

SPEC is a JSON file `{"format": 1, "system_packages": [...], "requirements": [...],
"constraints": [...], "install_as": uid}` (no `requirements`: the image's environment as it is; the tree's resolved requirement lines, as an image build writes
requirements/model.txt). What the image already holds is read from the image itself
(`/opt/truss/requirements`, dpkg), so the spec depends on the tree alone.

- **System packages:** those not installed (dpkg) are installed with `apt-get update` +
  `apt-get install --no-install-recommends`. A package removed from the list is not
  uninstalled: it stays until the container is replaced by one of a rebuilt image.
- **Requirements:** equal to the image's → the image's venv. Otherwise an environment keyed
  by the lines' content under ENVS_DIR: a copy of the image's venv (the serving generation's
  venv is never touched: it may be importing from it), in which uv uninstalls the projects
  the image's list had and the tree's lacks, then installs the server's and the tree's
  requirements (only what is missing or at another version is downloaded; uv's cache in the
  container is shared by its environments). uv is the control plane's own binary when it could
  lend it (LENT_UV), else fetched once per container with pip (the image build removes its
  own); pip is the fallback. An environment already made is reused. The Python installs run
  as `install_as` (the server's user), not root: only apt needs root, as in an image build.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable, Optional, Sequence

BASE_VENV = Path("/opt/truss/venv")
IMAGE_REQUIREMENTS = Path("/opt/truss/requirements")  # server.txt, model.txt, constraints.txt of the build
ENVS_DIR = Path("/opt/truss/envs")
# The control plane's own uv binary, copied in when the engine runs its architecture (a Linux
# glibc build: a musl image cannot run it, and then one is fetched instead).
LENT_UV = ENVS_DIR / ".uv-lent" / "uv"
COMPLETE = ".truss-complete"  # written last: an environment without it is half made
RESULT_PREFIX = "PROVISIONED "
OUTPUT_TAIL_LINES = 25

Log = Callable[[str], None]


class ProvisionFailed(Exception):
    """An install failed; `output` is the installer's (its last lines)."""

    def __init__(self, message: str, output: str) -> None:
        super().__init__(message)
        self.output = output


def load_spec(path: Path) -> dict:
    spec = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(spec, dict) or spec.get("format") != 1:
        raise ValueError(f"{path}: not a provision spec of format 1")
    return spec


def provision(spec: dict, log: Log) -> str:
    """Install what the spec asks for that the container lacks -> the interpreter to serve on."""
    install_system_packages([word for entry in spec.get("system_packages") or [] for word in entry.split()], log)
    if "requirements" not in spec:  # the tree's did not resolve: the image's environment, as it is
        return str(BASE_VENV / "bin" / "python")
    return environment(list(spec.get("requirements") or []), list(spec.get("constraints") or []), log,
                       spec.get("install_as"))


# -- system packages --------------------------------------------------------------------


def install_system_packages(packages: Sequence[str], log: Log) -> None:
    missing = [package for package in packages if not _dpkg_installed(package)]
    if not missing:
        return
    if os.geteuid() != 0:
        raise ProvisionFailed(f"system_packages {', '.join(missing)}: installing them needs root in the container",
                              "the container's provisioner runs as root (docker exec --user root)")
    log(f"installing system packages: {' '.join(missing)}")
    environ = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    _run(["apt-get", "update", "-q"], log, environ, f"apt-get update failed (installing {' '.join(missing)})")
    _run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing], log, environ,
         f"apt-get install {' '.join(missing)} failed")
    subprocess.run(["apt-get", "clean"], check=False, capture_output=True)


def _dpkg_installed(package: str) -> bool:
    try:
        done = subprocess.run(["dpkg-query", "-W", "-f=${Status}", package], capture_output=True, text=True)
    except FileNotFoundError:  # not a Debian image: apt-get will say so
        return False
    return done.returncode == 0 and done.stdout.strip().endswith(" installed")


# -- requirements -----------------------------------------------------------------------


def environment_path(requirements: list[str], constraints: list[str]) -> Path:
    """Where the environment of these lines lives: keyed by them and by the image's lists (its
    venv is the copy's base)."""
    image = [_lines(IMAGE_REQUIREMENTS / name) for name in ("model.txt", "constraints.txt", "server.txt")]
    return ENVS_DIR / hashlib.sha256(json.dumps([requirements, constraints, *image]).encode()).hexdigest()[:16]


def environment(requirements: list[str], constraints: list[str], log: Log, install_as: Optional[int] = None) -> str:
    """The environment for these lines (made when new) -> its interpreter. Run as root, the
    copy and the installs run as `install_as` (the server's user): a package's build scripts
    never run as root, and that user owns what they write (ENVS_DIR included)."""
    image_requirements = _lines(IMAGE_REQUIREMENTS / "model.txt")
    image_constraints = _lines(IMAGE_REQUIREMENTS / "constraints.txt")
    if requirements == image_requirements and constraints == image_constraints:
        return str(BASE_VENV / "bin" / "python")
    target = environment_path(requirements, constraints)
    python = target / "bin" / "python"
    if (target / COMPLETE).is_file():
        return str(python)
    log(f"making environment {target}: a copy of {BASE_VENV}, then the tree's requirements")
    shutil.rmtree(target, ignore_errors=True)  # half made by an install that died
    installer = _installer(install_as)
    _own_envs_dir(installer)
    try:
        # Not -a: an unprivileged copy cannot keep root as the owner, and need not.
        _run(["cp", "-dR", "--preserve=mode,timestamps,links", str(BASE_VENV), str(target)], log, None,
             f"copying {BASE_VENV} failed", installer)
    except ProvisionFailed:
        shutil.rmtree(target, ignore_errors=True)
        raise
    lists = target / ".truss-requirements"
    lists.mkdir()
    (lists / "model.txt").write_text("".join(f"{line}\n" for line in requirements), encoding="utf-8")
    (lists / "constraints.txt").write_text("".join(f"{line}\n" for line in constraints), encoding="utf-8")
    wanted = {_project(line) for line in requirements}
    removed = sorted({_project(line) for line in image_requirements} - wanted - {None})  # type: ignore[operator]
    arguments = ["-r", str(IMAGE_REQUIREMENTS / "server.txt"), "-r", str(lists / "model.txt")]
    if constraints:
        arguments += ["-c", str(lists / "constraints.txt")]
    uv = _uv(log, installer)
    environ = {**os.environ, "UV_CACHE_DIR": str(ENVS_DIR / ".uv-cache"), "UV_NATIVE_TLS": "1",
               "PIP_DISABLE_PIP_VERSION_CHECK": "1", "VIRTUAL_ENV": str(target)}
    try:
        if removed:  # first: what the server still needs among them comes back with the install
            log(f"uninstalling {' '.join(removed)}")
            if uv:
                _run([uv, "pip", "uninstall", "--python", str(python), *removed], log, environ, "uninstall failed",
                     installer)
            else:
                _run([str(python), "-m", "pip", "uninstall", "-y", *removed], log, environ, "uninstall failed", installer)
        if uv:
            _run([uv, "pip", "install", "--python", str(python), *arguments], log, environ,
                 "installing the requirements failed", installer)
        else:
            _run([str(python), "-m", "pip", "install", "--no-cache-dir", *arguments], log, environ,
                 "installing the requirements failed", installer)
    except ProvisionFailed:
        shutil.rmtree(target, ignore_errors=True)
        raise
    (target / COMPLETE).write_text("")
    return str(python)


def _uv(log: Log, installer: dict) -> Optional[str]:
    """uv for this container: the one the control plane lent it (LENT_UV, when it runs here),
    else one fetched once with the image venv's pip (the build removed its own); None (pip
    does it) when neither can be had."""
    if LENT_UV.is_file() and _runs([str(LENT_UV), "--version"]):
        return str(LENT_UV)
    tools = ENVS_DIR / ".uv-tool"
    uv = tools / "bin" / "uv"
    if uv.is_file():
        return str(uv)
    log("fetching uv into the container")
    done = subprocess.run([str(BASE_VENV / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-cache-dir",
                           "--disable-pip-version-check", "--target", str(tools), "uv"],
                          capture_output=True, text=True, **installer)
    if done.returncode != 0 or not uv.is_file():
        log("uv could not be fetched; installing with pip")
        return None
    return str(uv)


def _runs(command: list[str]) -> bool:
    try:
        return subprocess.run(command, capture_output=True).returncode == 0
    except OSError:  # another architecture, a libc it lacks
        return False


def _installer(install_as: Optional[int]) -> dict:
    """subprocess arguments that run a command as `install_as` when this runs as root."""
    if install_as is None or os.geteuid() != 0 or install_as == 0:
        return {}
    return {"user": install_as, "group": install_as, "extra_groups": []}


def _own_envs_dir(installer: dict) -> None:
    """ENVS_DIR exists and belongs to the installing user (it makes environments in it)."""
    ENVS_DIR.mkdir(parents=True, exist_ok=True)
    if installer:
        os.chown(ENVS_DIR, installer["user"], installer["group"])


def _run(command: list[str], log: Log, environ: Optional[dict], failure: str, installer: Optional[dict] = None) -> None:
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=environ,
                               **(installer or {}))
    lines = []
    assert process.stdout is not None
    for line in process.stdout:
        line = line.rstrip("\n")
        lines.append(line)
        log(line)
    if process.wait() != 0:
        tail = lines[-OUTPUT_TAIL_LINES:]
        raise ProvisionFailed(f"{failure} (exit {process.returncode})", "\n".join(tail))


def _lines(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    return [line for line in text.splitlines() if line.strip()]


def _project(line: str) -> Optional[str]:
    """A requirement line's project name, PEP 503-normalised; None for an option or a URL."""
    match = re.match(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:[\[<>=!~;@ ]|$)", line)
    if match is None or "://" in line.split("@")[0]:
        return None
    return re.sub(r"[-_.]+", "-", match.group(1)).lower()


# -- entry points -----------------------------------------------------------------------


def _say(line: str) -> None:
    print(line, flush=True)


def start_replica(spec_path: Path, run_as: int, argv: list[str]) -> None:
    """The container's start (as root): provision for the start tree, drop to `run_as`, and
    exec the development replica on the environment's interpreter. When provisioning fails
    the replica starts on the image's venv anyway (the failure is in the log): it serves the
    tree or fails to load it, and the control plane then starts the next one at the running
    tree, as the process runtime does."""
    python = str(BASE_VENV / "bin" / "python")
    try:
        python = provision(load_spec(spec_path), lambda line: _say(f"provision: {line}"))
    except (ProvisionFailed, OSError, ValueError) as exc:
        _say(f"provision: {exc}; the replica starts on the image's environment")
        for line in getattr(exc, "output", "").splitlines():
            _say(f"provision: {line}")
    if os.geteuid() == 0 and run_as != 0:
        os.setgroups([])
        os.setgid(run_as)
        os.setuid(run_as)
    os.execv(python, [python, "-m", "truss_cli.server.control", *argv])


def main(argv: Optional[list[str]] = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m truss_cli.server.control.provision SPEC", file=sys.stderr)
        return 2
    try:
        python = provision(load_spec(Path(args[0])), _say)
    except ProvisionFailed as exc:
        print(exc.output, flush=True)
        print(f"provision failed: {exc}", flush=True)
        return 1
    except (OSError, ValueError) as exc:
        print(f"provision failed: {exc}", flush=True)
        return 1
    _say(RESULT_PREFIX + json.dumps({"python": python}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
