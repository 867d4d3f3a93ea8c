"""The server bundle (truss_cli.server_bundle): what a replica gets, and what it imports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from truss_cli.local.environments import EnvironmentSpec, ensure_environment
from truss_cli.local.interpreters import probe
from truss_cli.server_bundle import server_requirements, write_server_bundle

# Every package the server may load besides the standard library and the bundle itself: its
# own requirements (the first part of server/requirements.txt) and what they import in turn.
# Not pydantic, FastAPI or PyYAML: they are installed for the model, at the versions it pins.
REPLICA_PACKAGES = {
    "starlette", "uvicorn", "msgpack",
    # starlette's async layer and its typing backports, and what anyio uses on some versions
    "anyio", "sniffio", "idna", "typing_extensions",
    # uvicorn's: its command-line parser (imported by uvicorn.main) and HTTP/1.1 protocol
    "click", "h11",
    # uvicorn's websocket protocol, for the model's /v1/websocket route (server/requirements.txt)
    "websockets",
}

# The replica's entry points, then what uvicorn loads when it starts serving (its protocol
# classes), so a dependency that only appears at run time is caught too.
IMPORT_AND_REPORT = """
import json, sys, sysconfig
import truss_cli.server.__main__, truss_cli.server.serve, truss_cli.server.app, truss_cli.server.status
import truss_cli.sync.manifest, truss_cli.server.replica_config
# The development replica's modules (docs/live-reload.md) and the patch envelope.
import truss_cli.server.control.__main__, truss_cli.server.control.supervisor, truss_cli.server.control.zygote
import truss_cli.server.control.worker, truss_cli.server.control.apply, truss_cli.server.control.hotswap
import truss_cli.sync.envelope
from truss_cli.server._uvicorn import uvicorn

async def app(scope, receive, send):
    pass

uvicorn.Config(app, log_config=None).load()
print(json.dumps({name: getattr(module, "__file__", None) for name, module in list(sys.modules.items())}))
"""


@pytest.fixture(scope="module")
def replica_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Python with only the server's requirements installed, as a replica gets."""
    interpreter = probe(sys.executable)
    assert interpreter is not None
    spec = EnvironmentSpec(interpreter, server_requirements=tuple(server_requirements()))
    return ensure_environment(spec, tmp_path_factory.mktemp("cache"), environ=os.environ).python


def test_the_bundle_holds_the_replica_side_modules(tmp_path: Path) -> None:
    bundle = write_server_bundle(tmp_path / "bundle")
    names = {path.relative_to(bundle).as_posix() for path in bundle.rglob("*") if path.is_file()}
    assert {
        "truss_cli/__init__.py", "truss_cli/server/replica_config.py",
        "truss_cli/server/serve.py", "truss_cli/server/protocol.py", "truss_cli/server/requirements.txt",
        "truss_cli/sync/manifest.py", "truss_cli/sync/envelope.py",
        "truss_cli/server/control/__main__.py", "truss_cli/server/control/supervisor.py",
        "truss_cli/server/control/zygote.py", "truss_cli/server/control/worker.py",
    } <= names
    # The config schema (pydantic 2) stays on the CLI side: the server reads the replica config.
    assert not names & {"truss_cli/config.py", "truss_cli/quantities.py"}
    assert not any(name.startswith(("truss_cli/cli/", "truss_cli/image/", "truss_cli/local/")) for name in names)
    assert "truss_cli/tree.py" not in names


def test_a_replica_imports_only_its_own_packages(tmp_path: Path, replica_python: Path) -> None:
    bundle = write_server_bundle(tmp_path / "bundle")
    # Nothing but the bundle on the path (no user site, no working directory of this
    # checkout): a module missing from the bundle fails to import instead of being found
    # in the developer's tree.
    result = subprocess.run(
        [str(replica_python), "-s", "-c", IMPORT_AND_REPORT],
        cwd=tmp_path,
        env={"PYTHONPATH": str(bundle)},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    modules: dict[str, str | None] = json.loads(result.stdout)

    paths = _install_paths(replica_python)
    site_packages = [paths["purelib"], paths["platlib"]]
    stdlib = [paths["stdlib"], paths["platstdlib"]]
    third_party = set()
    for name, file in modules.items():
        top = name.partition(".")[0]
        if file is None:
            continue  # built in, or made at run time: the -c script, Cython's runtime modules
        if top == "truss_cli":
            assert Path(file).is_relative_to(bundle), f"{name} loaded from {file}, outside the bundle"
        elif any(Path(file).is_relative_to(path) for path in site_packages):
            third_party.add(top)
        else:
            assert any(Path(file).is_relative_to(path) for path in stdlib), f"{name} loaded from {file}"
    assert third_party <= REPLICA_PACKAGES, f"not expected in a replica: {sorted(third_party - REPLICA_PACKAGES)}"
    assert {"starlette", "uvicorn", "h11"} <= third_party  # the probe saw the server load


def _install_paths(python: Path) -> dict[str, Path]:
    output = subprocess.run(
        [str(python), "-c", "import json, sysconfig; print(json.dumps(sysconfig.get_paths()))"],
        capture_output=True, text=True, check=True,
    ).stdout
    return {key: Path(value) for key, value in json.loads(output).items()}
