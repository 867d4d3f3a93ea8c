"""Choosing a runtime (truss_cli.controlplane.runtimes.select): `auto` takes Docker when an
engine answers, else local processes, and says which and why."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from runtime_support import runtime_settings
from truss_cli.controlplane.runtimes.select import select_runtime
from truss_cli.errors import TrussError, UsageError


def without_engine(tmp_path: Path):
    settings = runtime_settings(tmp_path / "data")
    # A socket path nothing listens on: as on a machine without Docker.
    environ = dict(settings.environ, DOCKER_HOST=f"unix://{tmp_path}/no-docker.sock")
    return dataclasses.replace(settings, environ=environ)


def test_auto_falls_back_to_processes_and_says_why(tmp_path: Path) -> None:
    selection = select_runtime("auto", without_engine(tmp_path))
    assert selection.runtime.kind == "process"
    assert selection.reason.startswith("process: no Docker engine answers")
    assert "no-docker.sock" in selection.reason


def test_docker_asked_for_without_an_engine_fails_with_how_to_start_one(tmp_path: Path) -> None:
    with pytest.raises(TrussError) as failure:
        select_runtime("docker", without_engine(tmp_path))
    assert "No Docker engine reachable" in failure.value.message
    assert failure.value.hint


def test_process_asked_for_is_process(tmp_path: Path) -> None:
    selection = select_runtime("process", runtime_settings(tmp_path / "data"))
    assert (selection.runtime.kind, selection.reason) == ("process", "process (asked for): replicas run as local processes")


def test_an_unknown_kind_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="auto, process, docker, kubernetes"):
        select_runtime("nomad", runtime_settings(tmp_path / "data"))


@pytest.mark.docker
def test_auto_picks_docker_when_the_engine_answers_and_a_base_image_is_set(tmp_path: Path) -> None:
    from docker_support import engine

    engine()  # skips without an engine (fails in CI)
    settings = runtime_settings(tmp_path / "data")
    if not settings.base_image:
        pytest.skip("TRUSS_BASE_IMAGE is not set (CI sets it)")
    selection = select_runtime("auto", settings)
    assert selection.runtime.kind == "docker"
    assert selection.reason.startswith("docker (auto): the Docker engine at")


@pytest.mark.docker
def test_auto_without_a_usable_base_image_runs_processes_and_says_why(tmp_path: Path) -> None:
    from docker_support import engine

    from truss_cli.image.engine import image_id

    client = engine()  # skips without an engine (fails in CI)
    settings = dataclasses.replace(runtime_settings(tmp_path / "data"), base_image=None)
    selection = select_runtime("auto", settings)
    if image_id(client, "python:3.11-slim") is not None:  # the default base image is here: usable
        assert selection.runtime.kind == "docker"
        return
    assert selection.runtime.kind == "process"
    assert selection.reason.startswith("process: the Docker engine at")
    assert ("TRUSS_BASE_IMAGE is not set and the default base image python:3.11-slim is not on this machine"
            in selection.reason)
    # docker asked for is docker all the same: the build then says what to do about the image.
    assert select_runtime("docker", settings).runtime.kind == "docker"
