"""config.yaml's `resources` as a Kubernetes container's `resources` block.

The amounts themselves are parsed once, in `truss_cli.quantities` (Kubernetes semantics, so
"500m" memory is refused there with a suggestion); this module spells them as a manifest
wants them ("0.5" -> "500m", "2048Mi" -> "2Gi", "1000M" -> "1G") and turns
`resources.accelerator` ("A10G", "A100:2") into a count of `nvidia.com/gpu`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Optional

from truss_cli.quantities import QuantityError, parse_cpu, parse_memory

GPU_RESOURCE = "nvidia.com/gpu"

# Truss's accelerator spelling: a type, optionally ":count" ("T4", "A10G:2", "H100_40GB:8").
_ACCELERATOR = re.compile(r"^(?P<kind>[A-Za-z0-9_]+)(?::(?P<count>\d+))?$")


def cpu_quantity(text: str) -> str:
    """"1" -> "1", "0.5" -> "500m", "1.5" -> "1500m", "250m" -> "250m"."""
    return parse_cpu(text).to_kubernetes()


def memory_quantity(text: str) -> str:
    """"2Gi" -> "2Gi", "2048Mi" -> "2Gi", "1G" -> "1G", "1000M" -> "1G", "1.5Gi" -> "1536Mi"."""
    return parse_memory(text).to_kubernetes()


@dataclass(frozen=True)
class Accelerator:
    kind: Optional[str]  # None: `use_gpu: true` without a type
    count: int


def parse_accelerator(text: Optional[str], use_gpu: bool) -> Optional[Accelerator]:
    """None for a CPU-only model; `use_gpu` alone means one GPU of any type."""
    if not text:
        return Accelerator(None, 1) if use_gpu else None
    match = _ACCELERATOR.match(text.strip())
    if match is None or (match["count"] is not None and int(match["count"]) < 1):
        raise QuantityError(f'expected an accelerator such as "T4", "A10G" or "A100:2", got "{text}"')
    return Accelerator(match["kind"], int(match["count"] or 1))


def container_resources(cpu: str, memory: str, accelerator: Optional[str] = None, use_gpu: bool = False) -> dict[str, Any]:
    """Requests equal to limits for CPU and memory: the pod is in the Guaranteed QoS class, so
    the node evicts it last under pressure, and it gets what a Docker replica of the same
    config gets (the Docker runtime sets the same amounts as limits). GPUs are limits only
    (an extended resource's request defaults to its limit and may not differ)."""
    amounts = {"cpu": cpu_quantity(cpu), "memory": memory_quantity(memory)}
    limits: dict[str, Any] = dict(amounts)
    gpu = parse_accelerator(accelerator, use_gpu)
    if gpu is not None:
        limits[GPU_RESOURCE] = str(gpu.count)
    return {"requests": dict(amounts), "limits": limits}
