"""A runtime's optional capability: make the Python environment for a development tree
without a rebuild (docs/live-reload.md, contract C3).

A runtime that can (the process runtime: a cached virtual environment per set of
requirements) has `environment_for(tree_dir, on_progress) -> str`, the interpreter a
development replica of that tree runs on; the control plane sends it to the replica, which
switches to it with overlap. A runtime without the method cannot (its environment is in an
image): a requirements change is then synced by a rebuild. The control plane asks for the
capability (`environment_builder`), never for the runtime's kind.

A runtime whose environment is in an image (docker) may instead provision a *running*
development replica for a tree (`provision(handle, tree_dir, on_progress) -> python`): its
system packages and requirements installed inside the replica's container, the interpreter
returned being one inside it (`replica_provisioner`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional, Protocol

from truss_cli.controlplane.runtimes.base import BuildError, Handle

ProgressCallback = Callable[[str], None]


class EnvironmentBuildFailed(BuildError):
    """Installing a tree's requirements failed. The message is one line; `output` is the
    installer's own output (its last lines), what the user needs to fix the requirement."""

    def __init__(self, message: str, output: str) -> None:
        super().__init__(message)
        self.output = output


class ProvisionUnsupported(BuildError):
    """This replica cannot be provisioned in place (e.g. its image predates it): the change
    is synced by a rebuild instead."""


class ReplicaUnavailable(BuildError):
    """The replica to provision is gone or not running (being replaced): retry the sync."""


class BuildsEnvironments(Protocol):
    def environment_for(self, tree_dir: Path, on_progress: ProgressCallback = ...) -> str:
        """The interpreter (a path) of the environment for the tree's requirements, created
        first when no such environment exists (the others untouched: replicas may run from
        them). Raises EnvironmentBuildFailed."""
        ...


def environment_builder(runtime: object) -> Optional[Callable[..., str]]:
    """The runtime's `environment_for`, or None when it cannot build environments."""
    method = getattr(runtime, "environment_for", None)
    return method if callable(method) else None


class ProvisionsReplicas(Protocol):
    def provision(self, handle: Handle, tree_dir: Path, on_progress: ProgressCallback = ...) -> str:
        """Install the tree's system packages and requirements into the running replica
        `handle` -> the interpreter (a path inside the replica) of the tree's environment;
        what the serving generation imports is left untouched. Raises EnvironmentBuildFailed,
        ProvisionUnsupported when this replica cannot (the change is then a rebuild),
        ReplicaUnavailable when it is gone or stopped (the sync answers 503: retry)."""
        ...


def replica_provisioner(runtime: object) -> Optional[Callable[..., str]]:
    """The runtime's `provision`, or None when it cannot install into a running replica."""
    method = getattr(runtime, "provision", None)
    return method if callable(method) else None
