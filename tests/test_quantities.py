"""CPU and memory amounts with Kubernetes' meaning (truss_cli.quantities)."""

from __future__ import annotations

import pytest

from truss_cli.quantities import QuantityError, parse_cpu, parse_memory


@pytest.mark.parametrize(
    ("text", "nano_cpus", "kubernetes"),
    [
        ("500m", 500_000_000, "500m"),
        ("0.5", 500_000_000, "500m"),
        (".25", 250_000_000, "250m"),
        ("2", 2_000_000_000, "2"),
        ("2000m", 2_000_000_000, "2"),
        ("1.5", 1_500_000_000, "1500m"),
        # Kubernetes' precision is a millicore, rounded up; a container gets the same.
        ("0.0001", 1_000_000, "1m"),
    ],
)
def test_cpu_amounts(text: str, nano_cpus: int, kubernetes: str) -> None:
    cpu = parse_cpu(text)
    assert cpu.nano_cpus == nano_cpus
    assert cpu.to_kubernetes() == kubernetes
    assert parse_cpu(cpu.to_kubernetes()) == parse_cpu(kubernetes)


@pytest.mark.parametrize(
    ("text", "size", "kubernetes"),
    [
        ("512Mi", 512 * 2**20, "512Mi"),
        ("2Gi", 2 * 2**30, "2Gi"),
        ("1G", 10**9, "1G"),
        ("1000", 1000, "1k"),
        ("1K", 1000, "1k"),
        ("1.5Gi", 1536 * 2**20, "1536Mi"),
        ("2048Mi", 2 * 2**30, "2Gi"),
        ("123", 123, "123"),
        ("1.0001k", 1001, "1001"),  # a fraction of a byte is rounded up, as Kubernetes does
    ],
)
def test_memory_amounts(text: str, size: int, kubernetes: str) -> None:
    memory = parse_memory(text)
    assert memory.bytes == size
    assert memory.to_kubernetes() == kubernetes
    assert parse_memory(memory.to_kubernetes()) == memory


def test_memory_with_milli_is_refused_not_read_as_megabytes() -> None:
    with pytest.raises(QuantityError) as raised:
        parse_memory("512m")
    message = str(raised.value)
    assert "0.512 bytes" in message
    assert "512Mi" in message and "512M " in message


@pytest.mark.parametrize("text", ["1g", "2gi", "4GB", "1Mb"])
def test_memory_units_in_the_wrong_case_are_refused_with_both_spellings(text: str) -> None:
    number, letter = text[0], text[1].upper()
    with pytest.raises(QuantityError, match=rf"write {number}{letter}i \(binary\) or {number}{letter} \(decimal\)"):
        parse_memory(text)


@pytest.mark.parametrize("text", ["", "lots", "-1", "1e3", "1 Gi", "0", "0.5"])
def test_other_memory_text_is_refused(text: str) -> None:
    with pytest.raises(QuantityError, match="expected a memory size"):
        parse_memory(text)


@pytest.mark.parametrize("text", ["", "two", "-1", "1k", "500M", "0", "0m"])
def test_other_cpu_text_is_refused(text: str) -> None:
    with pytest.raises(QuantityError, match="expected a CPU count"):
        parse_cpu(text)
