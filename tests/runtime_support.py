"""What the runtime tests share: settings with a data dir of the test's own, a build request,
and waiting on a replica's observed status."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from conftest import edge_settings
from truss_cli.config import load_config
from truss_cli.controlplane.runtimes.base import BuildRequest, Handle, ObservedStatus, Runtime
from truss_cli.settings import Settings


def runtime_settings(data_dir: Path) -> Settings:
    return dataclasses.replace(edge_settings(), data_dir=data_dir)


def build_request(model_dir: Path, deployment_id: str = "dep-1") -> BuildRequest:
    config = load_config(model_dir).config
    return BuildRequest(deployment_id, model_dir, config, model_dir.parent / f"{deployment_id}-build.log")


def wait_for_phase(runtime: Runtime, handle: Handle, *phases: str, timeout: float = 600) -> ObservedStatus:
    """Poll until the replica is in one of `phases` (the timeout only keeps a broken test from hanging)."""
    deadline = time.monotonic() + timeout
    while True:
        status = runtime.status(handle)
        if status.phase in phases:
            return status
        assert time.monotonic() < deadline, f"still {status} after {timeout} s"
        time.sleep(0.05)
