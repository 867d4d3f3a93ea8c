"""`--runtime auto|process|docker|kubernetes`: which runtime a control plane uses, and why (one line the
CLI prints)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from truss_cli.controlplane.runtimes.base import Runtime
from truss_cli.controlplane.runtimes.kubernetes.selection import KIND as KUBERNETES, KubernetesOptions, check_options
from truss_cli.errors import TrussError, UsageError
from truss_cli.config import DEFAULT_PYTHON_VERSION
from truss_cli.settings import BASE_IMAGE_ENV, Settings

AUTO = "auto"
CHOICES = (AUTO, "process", "docker", KUBERNETES)


@dataclass(frozen=True)
class Selection:
    runtime: Runtime
    reason: str  # e.g. "docker: the Docker engine at unix:///var/run/docker.sock answers"


def select_runtime(kind: str, settings: Settings, kubernetes: Optional[KubernetesOptions] = None) -> Selection:
    """The runtime `kind` names; `auto`: Docker when an engine answers and a base image is
    usable (TRUSS_BASE_IMAGE set, or the default base image on this machine), else local
    processes: an engine without a base image would fail every build (a machine without
    Docker Hub), while processes serve.

    An explicit `docker` without an engine raises the engine's TrussError (how to start one).
    `kubernetes` is never chosen by `auto`: it needs a namespace and a registry
    (`kubernetes`, its options; runtimes/kubernetes/selection.py).
    """
    if kind not in CHOICES:
        raise UsageError(f"--runtime {kind!r}: choose one of {', '.join(CHOICES)}")
    options = kubernetes or KubernetesOptions()
    check_options(kind, options)
    if kind == KUBERNETES:
        from truss_cli.controlplane.runtimes.kubernetes.selection import kubernetes_runtime

        runtime, reason = kubernetes_runtime(settings, options)
        return Selection(runtime, reason)  # type: ignore[arg-type]
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
        if kind == AUTO:
            missing = _no_base_image(runtime, settings)
            if missing is not None:
                return Selection(_process(settings), f"process: the Docker engine at {where} answers, but {missing}; "
                                                     "replicas run as local processes")
        chosen = "asked for" if kind == "docker" else "auto"
        return Selection(runtime, f"docker ({chosen}): the Docker engine at {where} answers")
    return Selection(_process(settings), "process (asked for): replicas run as local processes")


def _no_base_image(runtime: Any, settings: Settings) -> Optional[str]:
    """Why no image could be built FROM here, or None: TRUSS_BASE_IMAGE names one (the
    machine's choice), or the default base image of the default python_version is local."""
    if settings.base_image:
        return None
    from truss_cli.image.engine import image_id
    from truss_cli.image.plan import DEFAULT_BASE_IMAGE

    default = DEFAULT_BASE_IMAGE.format(version=f"3.{DEFAULT_PYTHON_VERSION[3:]}")
    try:
        if image_id(runtime.client, default) is not None:
            return None
    except Exception as exc:  # the engine answered the ping but not this: no image to count on
        return f"asking it for {default} failed ({exc})"
    return f"{BASE_IMAGE_ENV} is not set and the default base image {default} is not on this machine"


def _process(settings: Settings) -> Runtime:
    from truss_cli.controlplane.runtimes.process import ProcessRuntime

    return ProcessRuntime(settings)
