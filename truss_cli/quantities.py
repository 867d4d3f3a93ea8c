"""CPU and memory amounts as Kubernetes reads them, parsed in one place.

config.yaml's `resources.cpu` and `resources.memory` use Kubernetes quantities, as in Truss.
Config validation, container limits and (later) Kubernetes manifests all read them through
this module, so "500m" or "2Gi" means one thing everywhere.

Kubernetes reads a suffix by its case: `m` is milli (1/1000) and `M` mega. For a CPU that is
what a user means ("500m" = half a core); for memory it is not: `512m` is 0.512 bytes to
Kubernetes, almost surely meant as 512 MB. So a memory amount with `m` (or another lower-case
suffix Kubernetes does not know, such as `g`) is refused with a suggestion, never guessed.

Standard library only: config.py imports it, and config.py ships in every replica.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from decimal import Decimal

_NUMBER = r"(?P<number>\d+(?:\.\d*)?|\.\d+)"
_CPU = re.compile(rf"^{_NUMBER}(?P<suffix>m?)$")
_MEMORY = re.compile(rf"^{_NUMBER}(?P<suffix>[A-Za-z]*)$")

_NANOS_PER_CORE = 1_000_000_000
# Binary (Ki..Ei) and decimal (k..E) suffixes. "K" is not Kubernetes' spelling but is read
# the way everyone writes it (kilo); it comes out as "k" in a manifest.
_MEMORY_FACTORS = {
    "": 1,
    "k": 10**3, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18,
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
}
# Largest first, so a manifest says "2Gi" rather than "2048Mi".
_BINARY_UNITS = (("Ei", 2**60), ("Pi", 2**50), ("Ti", 2**40), ("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10))
_DECIMAL_UNITS = (("E", 10**18), ("P", 10**15), ("T", 10**12), ("G", 10**9), ("M", 10**6), ("k", 10**3))

CPU_EXAMPLES = '"1", "0.5" or "500m"'
MEMORY_EXAMPLES = '"512Mi", "2Gi" or "1G"'


class QuantityError(ValueError):
    """Not a CPU or memory amount; the message says what was expected (without key or file,
    which the caller adds)."""


@dataclass(frozen=True, order=True)
class Cpu:
    """A CPU amount, in cores (Decimal: "0.1" stays exact)."""

    cores: Decimal

    @property
    def millicores(self) -> int:
        # Kubernetes' precision is 1m and it rounds finer amounts up.
        return math.ceil(self.cores * 1000)

    @property
    def nano_cpus(self) -> int:
        """Billionths of a core, as Docker's NanoCpus (at Kubernetes' 1m precision, so a
        container and a pod get the same amount)."""
        return self.millicores * (_NANOS_PER_CORE // 1000)

    def to_kubernetes(self) -> str:
        """"2" for whole cores, else millicores ("500m")."""
        millicores = self.millicores
        return str(millicores // 1000) if millicores % 1000 == 0 else f"{millicores}m"

    def describe(self) -> str:
        return f"{self.millicores / 1000:g} CPU"


@dataclass(frozen=True, order=True)
class Memory:
    """A memory amount, in whole bytes."""

    bytes: int

    def to_kubernetes(self) -> str:
        """The shortest exact spelling: "2Gi", "1G", "1536Mi", or a plain byte count."""
        for units in (_BINARY_UNITS, _DECIMAL_UNITS):
            for suffix, factor in units:
                if self.bytes >= factor and self.bytes % factor == 0:
                    return f"{self.bytes // factor}{suffix}"
        return str(self.bytes)

    def describe(self) -> str:
        for suffix, factor in _BINARY_UNITS:
            if self.bytes >= factor:
                return f"{self.bytes / factor:.4g}{suffix}"
        return f"{self.bytes} bytes"


def parse_cpu(text: str) -> Cpu:
    """"500m" -> 0.5 cores, "0.5" -> 0.5, "2" -> 2. Must be more than zero."""
    match = _CPU.match(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise QuantityError(f"expected a CPU count such as {CPU_EXAMPLES}, got {_show(text)}")
    cores = Decimal(match["number"]) / (1000 if match["suffix"] == "m" else 1)
    if cores <= 0:
        raise QuantityError(f"expected a CPU count above zero such as {CPU_EXAMPLES}, got {_show(text)}")
    return Cpu(cores)


def parse_memory(text: str) -> Memory:
    """"512Mi" -> 536870912 bytes, "2Gi", "1G" -> 10**9, "1000" -> 1000. Must be at least a byte."""
    match = _MEMORY.match(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise QuantityError(f"expected a memory size such as {MEMORY_EXAMPLES}, got {_show(text)}")
    number, suffix = match["number"], match["suffix"]
    if suffix not in _MEMORY_FACTORS:
        raise QuantityError(_unknown_memory_suffix(text, number, suffix))
    amount = Decimal(number) * _MEMORY_FACTORS[suffix]
    if amount < 1:
        raise QuantityError(f"expected a memory size of at least one byte such as {MEMORY_EXAMPLES}, got {_show(text)}")
    return Memory(math.ceil(amount))  # Kubernetes rounds a fraction of a byte up


def _unknown_memory_suffix(text: str, number: str, suffix: str) -> str:
    # A unit with the wrong case ("512m", "1g", "2gi") or a trailing B ("1GB"): say what it
    # reads as, and the two spellings that mean what the user most likely meant.
    key = suffix.lower().removesuffix("b") if len(suffix) > 1 else suffix.lower()
    letter = key[:1].upper()
    if key not in ("k", "m", "g", "t", "p", "e", "ki", "mi", "gi", "ti", "pi", "ei"):
        return f"expected a memory size such as {MEMORY_EXAMPLES}, got {_show(text)} (unknown unit {suffix!r})"
    meant = f"{number}{letter if letter != 'K' else 'k'}"
    hint = f"for {number} {_MAGNITUDES[letter]} write {number}{letter}i (binary) or {meant} (decimal)"
    if suffix == "m":
        bytes_ = Decimal(number) / 1000
        return f'{_show(text)} means {bytes_.normalize():f} bytes ("m" is milli in Kubernetes quantities); {hint}'
    return f"{_show(text)}: unknown unit {suffix!r} (units are case-sensitive); {hint}"


_MAGNITUDES = {"K": "kB", "M": "MB", "G": "GB", "T": "TB", "P": "PB", "E": "EB"}


def _show(value: object) -> str:
    return f'"{value}"' if isinstance(value, str) else repr(value)
