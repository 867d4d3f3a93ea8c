"""`--runtime auto|process|docker`: which runtime a control plane uses, and why (one line the
CLI prints)."""

from __future__ import annotations

from dataclasses import dataclass

from truss_cli.controlplane.runtimes.base import Runtime
from truss_cli.errors import TrussError, UsageError
from truss_cli.settings import Settings

AUTO = "auto"
CHOICES = (AUTO, "process", "docker")


@dataclass(frozen=True)
class Selection:
    runtime: Runtime
    reason: str  # e.g. "docker: the Docker engine at unix:///var/run/docker.sock answers"


def select_runtime(kind: str, settings: Settings) -> Selection:
    """The runtime `kind` names; `auto`: Docker when an engine answers, else local processes.

    An explicit `docker` without an engine raises the engine's TrussError (how to start one).
    """
    if kind not in CHOICES:
        raise UsageError(f"--runtime {kind!r}: choose one of {', '.join(CHOICES)}")
    # Imported here: the process runtime needs no Docker SDK, and a failing engine is only
    # worth asking about when Docker may be used.
    if kind in (AUTO, "docker"):
        from truss_cli.controlplane.runtimes.docker import DockerRuntime

        where = settings.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
        try:
            runtime = DockerRuntime(settings)
        except TrussError as exc:
            if kind == "docker":
                raise
            return Selection(_process(settings), f"process: no Docker engine answers ({exc.message}); replicas run as local processes")
        chosen = "asked for" if kind == "docker" else "auto"
        return Selection(runtime, f"docker ({chosen}): the Docker engine at {where} answers")
    return Selection(_process(settings), "process (asked for): replicas run as local processes")


def _process(settings: Settings) -> Runtime:
    from truss_cli.controlplane.runtimes.process import ProcessRuntime

    return ProcessRuntime(settings)
