"""A custom server's secrets, as Truss gives them: one file per declared secret, nothing in its
environment (`truss_cli/server/custom/secret_files.py`), against the real replica and the
test app reading its files."""

from __future__ import annotations

import os
import shutil
import signal
import textwrap
from pathlib import Path

import httpx
import pytest

from custom_server_support import APP, CustomReplica, app_options, reserve_port  # noqa: F401 (fixture)
from runtime_support import build_request, runtime_settings, wait_for_phase
from truss_cli.controlplane.runtimes.base import GONE, ReplicaSpec
from truss_cli.controlplane.runtimes.process import ProcessRuntime
from truss_cli.server import protocol
from truss_cli.server.custom.secret_files import SecretsUnavailable, write_secret_files
from truss_cli.server.status import FAILED, READY

READY_NOW = {"READY_AT_ONCE": "1"}
API_KEY = "sk-test-4f1c9e"  # a stand-in value, distinctive enough to search the log for
FROM_FILE = "token-from-a-mounted-file"


def test_declared_secrets_are_files_in_a_private_directory_and_not_in_the_environment(
    tmp_path: Path, reserve_port
) -> None:
    mounted = tmp_path / "mounted"
    mounted.mkdir()
    (mounted / "hf_access_token").write_text(FROM_FILE + "\n")  # `echo token > file` style
    env = {
        **READY_NOW,
        f"{protocol.SECRET_ENV_PREFIX}api_key": API_KEY,
        protocol.SECRETS_DIR_ENV: str(mounted),
        f"{protocol.SECRET_ENV_PREFIX}undeclared": "not for the custom server",
    }
    options = app_options(reserve_port(), secrets=("api_key", "hf_access_token", "not_set"))
    with CustomReplica(tmp_path, options, env=env) as replica:
        replica.wait_phase(READY)
        seen = replica.client.get("/secrets").json()
        directory = Path(seen["directory"])
        assert seen["files"] == {
            "api_key": {"value": API_KEY, "mode": "0o600"},
            "hf_access_token": {"value": FROM_FILE, "mode": "0o600"},  # as the model server reads it
        }
        assert seen["directory_mode"] == "0o700"
        assert directory != mounted and not directory.is_relative_to(tmp_path)
        assert seen["secret_variables"] == []  # files only, as in Truss
        assert replica.stop() == 0
        log = replica.log()
    assert not directory.exists()  # removed when the replica stopped
    assert "secret 'not_set' has no value" in log  # a declared secret without a value is named
    assert API_KEY not in log and FROM_FILE not in log


def test_an_image_path_is_written_and_emptied_again(tmp_path: Path, reserve_port) -> None:
    # What an image's CMD does with /secrets (here a directory the test can own).
    target = tmp_path / "image-root" / "secrets"
    target.mkdir(parents=True, mode=0o755)
    env = {**READY_NOW, f"{protocol.SECRET_ENV_PREFIX}api_key": API_KEY}
    options = app_options(reserve_port(), secrets=("api_key",))
    with CustomReplica(tmp_path, options, env=env, arguments=("--secrets-path", str(target))) as replica:
        replica.wait_phase(READY)
        seen = replica.client.get("/secrets").json()
        assert seen["directory"] == str(target)
        assert seen["directory_mode"] == "0o700"  # made private, though the image made it 0755
        assert seen["files"] == {"api_key": {"value": API_KEY, "mode": "0o600"}}
        assert replica.stop() == 0
    assert target.is_dir() and list(target.iterdir()) == []  # the directory is the image's, the files were ours


def test_a_directory_already_mounted_at_the_path_is_read_in_place(tmp_path: Path, reserve_port) -> None:
    # Truss's own `docker run` mounts a directory at /secrets; those files are the secrets.
    target = tmp_path / "secrets"
    target.mkdir()
    (target / "api_key").write_text(API_KEY)
    options = app_options(reserve_port(), secrets=("api_key",))
    with CustomReplica(tmp_path, options, env=READY_NOW, arguments=("--secrets-path", str(target))) as replica:
        replica.wait_phase(READY)
        assert replica.client.get("/secrets").json()["files"]["api_key"]["value"] == API_KEY
        assert replica.stop() == 0
    assert (target / "api_key").read_text() == API_KEY  # not ours to remove


def test_a_secrets_path_that_cannot_be_made_fails_the_replica_before_the_custom_server_starts(
    tmp_path: Path, reserve_port
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    started = tmp_path / "started"
    options = app_options(reserve_port(), command=f"touch {started}", secrets=("api_key",))
    env = {f"{protocol.SECRET_ENV_PREFIX}api_key": API_KEY}
    with CustomReplica(tmp_path, options, env=env, arguments=("--secrets-path", str(blocker / "secrets"))) as replica:
        assert replica.wait_exit() == protocol.EXIT_LOAD_FAILED
        status = replica.status()
        assert status.phase == FAILED
        assert status.summary.startswith(f"cannot create {blocker / 'secrets'} for the custom server's secrets: ")
    assert not started.exists()


def test_a_secret_name_that_is_not_a_file_name_is_refused(tmp_path: Path, reserve_port) -> None:
    options = app_options(reserve_port(), secrets=("../escape",))
    with CustomReplica(tmp_path, options) as replica:
        assert replica.wait_exit() == protocol.EXIT_BAD_CONFIG
        assert "--secret '../escape': not usable as a file name" in replica.log()


def test_no_secrets_declared_means_no_directory_and_no_variables(tmp_path: Path, reserve_port) -> None:
    env = {**READY_NOW, f"{protocol.SECRET_ENV_PREFIX}api_key": API_KEY}
    with CustomReplica(tmp_path, app_options(reserve_port()), env=env) as replica:
        replica.wait_phase(READY)
        seen = replica.client.get("/secrets").json()
        assert seen["secret_variables"] == []
        assert seen["directory"] == "/secrets"  # no TRUSS_SECRETS_DIR: nothing was written for it


def test_a_value_replaces_a_file_left_by_an_earlier_run(tmp_path: Path) -> None:
    # A restarted container keeps its files: what is handed over now wins, mode included.
    target = tmp_path / "secrets"
    target.mkdir()
    (target / "api_key").write_text("stale")
    (target / "api_key").chmod(0o644)
    files = write_secret_files(["api_key"], {f"{protocol.SECRET_ENV_PREFIX}api_key": API_KEY}, target)
    assert (target / "api_key").read_text() == API_KEY
    assert oct((target / "api_key").stat().st_mode & 0o777) == "0o600"
    files.remove()
    assert not (target / "api_key").exists()


def test_a_link_planted_at_a_secrets_name_is_not_followed(tmp_path: Path) -> None:
    target = tmp_path / "secrets"
    target.mkdir()
    elsewhere = tmp_path / "elsewhere"
    (target / "api_key").symlink_to(elsewhere)
    with pytest.raises(SecretsUnavailable, match="cannot write the secret 'api_key' into"):
        write_secret_files(["api_key"], {f"{protocol.SECRET_ENV_PREFIX}api_key": API_KEY}, target)
    assert not elsewhere.exists()


def custom_model_dir(tmp_path: Path, port: int) -> Path:
    """A deployable custom server: the test app, declaring the secret api_key."""
    model_dir = tmp_path / "custom"
    (model_dir / "model").mkdir(parents=True)
    shutil.copy(APP, model_dir / "model" / "app.py")
    (model_dir / "config.yaml").write_text(
        textwrap.dedent(
            f"""\
            model_name: custom
            docker_server:
              start_command: python model/app.py {port}
              server_port: {port}
              predict_endpoint: /predict
              readiness_endpoint: /ready
              liveness_endpoint: /alive
            environment_variables:
              READY_AT_ONCE: "1"
            secrets:
              api_key: null
            """
        )
    )
    return model_dir


def session_processes(leader: int) -> dict[int, bytes]:
    """The processes of the replica's session (its logshim, the replica, the custom server),
    by pid, with their command lines."""
    found = {}
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat_file.read_text().rpartition(")")[2].split()
            if int(fields[3]) == leader:  # fields after the command: state, ppid, pgrp, session
                found[int(stat_file.parent.name)] = (stat_file.parent / "cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            continue  # ended meanwhile
    return found


def test_the_control_planes_process_runtime_hands_a_custom_server_its_secrets_as_files(
    tmp_path: Path, reserve_port
) -> None:
    # The runtime writes the secrets into the replica's own 0700 directory and names it by
    # TRUSS_SECRETS_DIR; the replica hands those very files on. No process of the replica's
    # session has a value, or any TRUSS_SECRET_ variable, in its environment.
    runtime = ProcessRuntime(runtime_settings(tmp_path / "data"))
    spec = ReplicaSpec(
        "dep-1", runtime.prepare(build_request(custom_model_dir(tmp_path, reserve_port()))), secrets={"api_key": API_KEY}
    )
    handle = runtime.start(spec)
    try:
        assert wait_for_phase(runtime, handle, READY, FAILED).phase == READY
        seen = httpx.get(handle.url + "/secrets", trust_env=False).json()
        assert seen["files"] == {"api_key": {"value": API_KEY, "mode": "0o600"}}
        assert seen["directory_mode"] == "0o700"
        assert seen["secret_variables"] == []
        # The runtime's directory, removed by its stop; no copy of the value anywhere else.
        assert seen["directory"] == str(Path(handle.data["dir"]) / "secrets")
        processes = session_processes(handle.data["pid"])
        assert any(b"truss_cli.server.custom" in line for line in processes.values())  # the replica
        assert any(b"model/app.py" in line for line in processes.values())  # the custom server
        for pid, command_line in processes.items():
            environ = Path(f"/proc/{pid}/environ").read_bytes()
            assert b"TRUSS_SECRET_" not in environ, command_line
            assert API_KEY.encode() not in environ + command_line, command_line
        runtime.stop(handle)
        assert not Path(seen["directory"]).exists()
        assert API_KEY not in (Path(handle.data["dir"]) / "replica.log").read_text()
    finally:
        runtime.stop(handle)


def test_a_sigkilled_custom_server_replica_leaves_no_secret_file_once_stopped(tmp_path: Path, reserve_port) -> None:
    # A SIGKILL runs nothing of the replica's own cleanup: the runtime's stop (which the
    # control plane calls for a replica it finds gone) removes the files.
    runtime = ProcessRuntime(runtime_settings(tmp_path / "data"))
    spec = ReplicaSpec(
        "dep-1", runtime.prepare(build_request(custom_model_dir(tmp_path, reserve_port()))), secrets={"api_key": API_KEY}
    )
    handle = runtime.start(spec)
    try:
        assert wait_for_phase(runtime, handle, READY, FAILED).phase == READY
        directory = Path(httpx.get(handle.url + "/secrets", trust_env=False).json()["directory"])
        assert (directory / "api_key").read_text() == API_KEY
        os.killpg(handle.data["pid"], signal.SIGKILL)  # the whole session: nothing of it runs on
        assert wait_for_phase(runtime, handle, GONE).phase == GONE
        assert (directory / "api_key").exists()  # nothing ran after the kill
        runtime.stop(handle, 0)
        assert not directory.exists()
    finally:
        runtime.stop(handle, 0)
