"""config.yaml's `resources.cpu` / `resources.memory` as Docker container limits.

Only what config.yaml states is applied: a config without `resources` runs unlimited, as
`truss run` does, rather than under Truss's defaults (1 CPU, 2Gi) that the user never chose.
The amounts are read by `truss_cli.quantities`, as config validation reads them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from truss_cli.config import TrussConfig
from truss_cli.quantities import Cpu, Memory

_NANO = 1_000_000_000


@dataclass
class ContainerLimits:
    nano_cpus: int | None = None  # billionths of a CPU, as Docker's NanoCpus
    memory_bytes: int | None = None
    notes: list[str] = field(default_factory=list)

    def describe(self) -> str:
        parts = []
        if self.nano_cpus:
            parts.append(f"{self.nano_cpus / _NANO:g} CPU")
        if self.memory_bytes:
            parts.append(f"{Memory(self.memory_bytes).describe()} memory")
        return ", ".join(parts) or "no limits"


def container_limits(config: TrussConfig, engine_cpus: int | None = None) -> ContainerLimits:
    """The limits config.yaml asks for; a CPU count above the engine's is capped, with a note."""
    limits = ContainerLimits()
    stated = config.resources.model_fields_set if "resources" in config.model_fields_set else set()
    if "cpu" in stated:
        cpu: Cpu = config.resources.cpu_quantity
        limits.nano_cpus = cpu.nano_cpus
        if engine_cpus and limits.nano_cpus > engine_cpus * _NANO:
            limits.notes.append(
                f"config.yaml resources.cpu {config.resources.cpu} is more than the Docker engine's "
                f"{engine_cpus} CPUs; limiting the container to {engine_cpus}"
            )
            limits.nano_cpus = engine_cpus * _NANO
    if "memory" in stated:
        limits.memory_bytes = config.resources.memory_quantity.bytes
    return limits
