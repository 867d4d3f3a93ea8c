"""The config keys of Truss that this machine cannot honour, and the one check that refuses them.

Truss configs written for Baseten use keys that need a GPU, Baseten's storage or Hugging Face
at build time. config.py accepts them (a config that merely mentions one loads, and a remote
may honour it later); a model that *uses* one is refused here, before any slow step, with one
message per key naming it and why. Running such a model without the feature would either
fail much later with a traceback (weights that were never downloaded) or silently do
something else (a GPU model on the CPU), which is worse than saying so at once.

This is the one list of them; docs/truss-compatibility.md describes the same keys.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Literal

from truss_cli.config import ConfigError, LoadedConfig, TrussConfig

# Where a model is about to run: `truss run` (a local process) or an image build.
Target = Literal["run", "image"]
_BOTH: frozenset[str] = frozenset({"run", "image"})

_NO_HUB = (
    "is not supported by truss-cli on this machine (no access to huggingface.co or cloud buckets); "
    "put the files under data/ or use external_data"
)
_CPU_ONLY = "truss-cli runs models on the CPU"


@dataclass(frozen=True)
class UnsupportedKey:
    key: str  # as written in config.yaml, dotted
    value: Callable[[TrussConfig], Any]  # what the model sets; falsy when it does not use the key
    reason: str  # why it cannot be honoured here, and what to do instead
    refused_for: frozenset[str] = _BOTH  # the targets it matters to


UNSUPPORTED_KEYS: tuple[UnsupportedKey, ...] = (
    UnsupportedKey("model_cache", lambda c: c.model_cache, f"downloading weights at build time {_NO_HUB}"),
    UnsupportedKey("weights", lambda c: c.weights, f"Baseten's weight delivery (hf://, s3://, gs://, ... sources) {_NO_HUB}"),
    UnsupportedKey("cache_internal", lambda c: c.cache_internal, f"Baseten's internal model cache {_NO_HUB}"),
    UnsupportedKey(
        "trt_llm",
        lambda c: c.trt_llm,
        f"TensorRT-LLM engines need an NVIDIA GPU and Baseten's engine images; {_CPU_ONLY}",
    ),
    UnsupportedKey(
        "build.model_server",
        lambda c: c.build.model_server if c.build.model_server != "TrussServer" else None,
        f"the TensorRT-LLM server needs an NVIDIA GPU; {_CPU_ONLY}; remove it to use the model server",
    ),
    UnsupportedKey("bis_llm", lambda c: c.bis_llm, "the Baseten Inference Stack runs only on Baseten's platform"),
    UnsupportedKey(
        "training_checkpoints",
        lambda c: c.training_checkpoints,
        "checkpoints of Baseten training jobs are downloaded from Baseten's storage, which truss-cli cannot reach; "
        "put the files under data/",
    ),
    UnsupportedKey("resources.accelerator", lambda c: c.resources.accelerator, f"{_CPU_ONLY}; remove it to run here"),
    UnsupportedKey(
        "resources.instance_type",
        lambda c: c.resources.instance_type,
        "names a Baseten machine; truss-cli sizes a replica by resources.cpu and resources.memory; remove it to run here",
    ),
    UnsupportedKey(
        "resources.node_count",
        lambda c: c.resources.node_count if (c.resources.node_count or 1) > 1 else None,
        "a multi-node deployment needs several machines; truss-cli runs a model on one; remove it to run here",
    ),
    UnsupportedKey(
        "resources.fabric",
        lambda c: c.resources.fabric,
        "network fabric between nodes exists only on Baseten's multi-node machines; remove it to run here",
    ),
    UnsupportedKey(
        "runtime.transport.kind",
        lambda c: c.runtime.transport.kind if c.runtime.transport.kind == "grpc" else None,
        "truss-cli serves HTTP and WebSocket, not gRPC",
    ),
    UnsupportedKey(
        "build.secret_to_path_mapping",
        lambda c: c.build.secret_to_path_mapping,
        "truss-cli does not mount secrets during an image build yet; build_commands would run without them "
        "(secrets reach the model when it runs)",
        refused_for=frozenset({"image"}),
    ),
)


def refuse_unsupported_keys(loaded: LoadedConfig, target: Target) -> None:
    """Raise ConfigError (exit 2) naming each key the model uses that cannot be honoured for `target`."""
    problems = []
    for entry in UNSUPPORTED_KEYS:
        if target not in entry.refused_for:
            continue
        value = entry.value(loaded.config)
        if not value:
            continue
        # A short scalar helps ("resources.accelerator: T4: ..."); a list or mapping would not.
        shown = f"{value}: " if isinstance(value, (str, int)) else ""
        problems.append(f"{loaded.display_path}: {entry.key}: {shown}{entry.reason}")
    if problems:
        raise ConfigError("\n".join(problems))
