"""Container limits from config.yaml's resources (truss_cli.image.limits)."""

from __future__ import annotations

from truss_cli.config import parse_config
from truss_cli.image.limits import container_limits


def limits_for(text: str, engine_cpus: int | None = None):
    return container_limits(parse_config(text).config, engine_cpus)


def test_a_config_without_resources_runs_unlimited() -> None:
    limits = limits_for("model_name: m\n")
    assert (limits.nano_cpus, limits.memory_bytes) == (None, None)
    assert limits.describe() == "no limits"


def test_stated_resources_become_limits_with_kubernetes_meaning() -> None:
    limits = limits_for("resources:\n  cpu: 500m\n  memory: 512Mi\n")
    assert limits.nano_cpus == 500_000_000
    assert limits.memory_bytes == 512 * 2**20
    assert limits.describe() == "0.5 CPU, 512Mi memory"


def test_more_cpus_than_the_engine_has_is_capped_with_a_note() -> None:
    limits = limits_for("resources:\n  cpu: 8\n", engine_cpus=2)
    assert limits.nano_cpus == 2_000_000_000
    assert limits.notes == [
        "config.yaml resources.cpu 8 is more than the Docker engine's 2 CPUs; limiting the container to 2"
    ]
