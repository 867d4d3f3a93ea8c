"""From a validated `config.yaml` to the replica config a model server reads.

The server reads `truss_cli.server.replica_config` with the standard library only, so that
it runs next to whichever pydantic a model pins; this module is the CLI side of that
contract: `truss run` writes the file into the cache, an image build into the image.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import replace
from pathlib import Path
from typing import Optional

from truss_cli.config import TrussConfig
from truss_cli.paths import atomic_directory
from truss_cli.server.replica_config import ReplicaConfig


def replica_config_for(config: TrussConfig, *, secret_values: bool) -> ReplicaConfig:
    """The replica config of `config`, with paths relative to the model directory.

    `secret_values`: keep the values written under `secrets:` (a local run, where the file
    stays on this machine); an image gets the names only.
    """
    secrets = {name: (value if secret_values else None) for name, value in config.secrets.items()}
    model_config = config.model_dump(mode="json")
    if not secret_values:
        model_config["secrets"] = dict(secrets)
    return ReplicaConfig(
        model_module_dir=config.model_module_dir,
        model_class_filename=config.model_class_filename,
        model_class_name=config.model_class_name,
        data_dir=config.data_dir,
        bundled_packages_dir=config.bundled_packages_dir,
        external_package_dirs=tuple(config.external_package_dirs),
        secrets=secrets,
        predict_concurrency=config.runtime.predict_concurrency,
        streaming_read_timeout=config.runtime.streaming_read_timeout,
        model_config=model_config,
    )


def with_paths(
    replica: ReplicaConfig,
    *,
    model_module_dir: Optional[str] = None,
    data_dir: Optional[str] = None,
    bundled_packages_dir: Optional[str] = None,
    external_package_dirs: Optional[tuple[str, ...]] = None,
) -> ReplicaConfig:
    """`replica` with some paths replaced (an image's layout, a data directory override)."""
    changes: dict = {}
    if model_module_dir is not None:
        changes["model_module_dir"] = model_module_dir
    if data_dir is not None:
        changes["data_dir"] = data_dir
    if bundled_packages_dir is not None:
        changes["bundled_packages_dir"] = bundled_packages_dir
    if external_package_dirs is not None:
        changes["external_package_dirs"] = tuple(external_package_dirs)
    return replace(replica, **changes)


def cached_replica_config(replica: ReplicaConfig, cache_root: Path) -> Path:
    """The file holding `replica` under `cache_root`, named by its content; written once.

    Readable by the owner only: a local run's file may hold secret values from config.yaml.
    """
    text = replica.to_json()
    name = hashlib.sha256(text.encode()).hexdigest()[:20]
    final = cache_root / "replica-configs" / name
    path = final / "replica.json"
    if path.is_file():
        return path
    try:
        with atomic_directory(final) as staging:
            target = staging / "replica.json"
            descriptor = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
                handle.write(text)
    except OSError:
        if not path.is_file():
            raise
        # Another process wrote the same content first.
    return path


def main(argv: Optional[list] = None) -> int:
    """`python -m truss_cli.config_to_replica MODEL_DIR`: print the replica config `truss run`
    would give the server, for starting `python -m truss_cli.server` by hand (benchmarks,
    debugging)."""
    import sys

    from truss_cli.config import ConfigError, load_config

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m truss_cli.config_to_replica MODEL_DIR", file=sys.stderr)
        return 2
    try:
        config = load_config(args[0]).config
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(replica_config_for(config, secret_values=True).to_json())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
