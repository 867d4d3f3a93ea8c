"""config.yaml's `resources.cpu` / `resources.memory` as Docker container limits.

Only what config.yaml states is applied: a config without `resources` runs unlimited, as
`truss run` does, rather than under Truss's defaults (1 CPU, 2Gi) that the user never chose.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from truss_cli.config import TrussConfig

_NANO = 1_000_000_000
# Kubernetes quantities, as Truss writes them: binary (Ki, Mi, Gi) and decimal (k, M, G).
_MEMORY_FACTORS = {
    "": 1,
    "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12, "p": 10**15, "e": 10**18,
    "ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40, "pi": 2**50, "ei": 2**60,
}
_MEMORY = re.compile(r"^(\d+(?:\.\d+)?)([KMGTPEkmgtpe]i?)?$")


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
            parts.append(f"{_human_bytes(self.memory_bytes)} memory")
        return ", ".join(parts) or "no limits"


def cpu_nanos(value: str) -> int:
    """"500m" -> 500_000_000, "2" -> 2_000_000_000, "0.5" -> 500_000_000."""
    if value.endswith("m"):
        return int(float(value[:-1]) * _NANO / 1000)
    return int(float(value) * _NANO)


def memory_bytes(value: str) -> int:
    """"512Mi" -> 536870912, "2Gi" -> 2147483648, "1G" -> 10**9, "1000" -> 1000."""
    match = _MEMORY.match(value)
    if match is None:
        raise ValueError(f"not a memory size: {value!r}")
    return int(float(match.group(1)) * _MEMORY_FACTORS[(match.group(2) or "").lower()])


def container_limits(config: TrussConfig, engine_cpus: int | None = None) -> ContainerLimits:
    """The limits config.yaml asks for; a CPU count above the engine's is capped, with a note."""
    limits = ContainerLimits()
    stated = config.resources.model_fields_set if "resources" in config.model_fields_set else set()
    if "cpu" in stated:
        limits.nano_cpus = cpu_nanos(config.resources.cpu)
        if engine_cpus and limits.nano_cpus > engine_cpus * _NANO:
            limits.notes.append(
                f"config.yaml resources.cpu {config.resources.cpu} is more than the Docker engine's "
                f"{engine_cpus} CPUs; limiting the container to {engine_cpus}"
            )
            limits.nano_cpus = engine_cpus * _NANO
    if "memory" in stated:
        limits.memory_bytes = memory_bytes(config.resources.memory)
    return limits


def _human_bytes(count: int) -> str:
    for unit, factor in (("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10)):
        if count >= factor:
            return f"{count / factor:.4g}{unit}"
    return f"{count} bytes"
