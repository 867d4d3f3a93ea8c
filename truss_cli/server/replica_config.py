"""What a model server needs to know about its model, as JSON read with the standard library.

The CLI side validates `config.yaml` (`truss_cli.config`, pydantic 2) and writes this file:
`truss run` into the cache, an image build into the image. The server reads only this file,
so it never imports the config schema, and so never needs pydantic 2 itself: a model that
pins `pydantic<2` shares its environment with the server (as in Truss's image).

Paths are relative to the model directory the server is started with, or absolute (an image
puts the model code, data and packages where Truss does). The file is named by the
`--replica-config` argument or the `protocol.REPLICA_CONFIG_ENV` variable.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Optional

# Bumped when a field changes meaning; a server refuses a file of another format, so a
# bundle and a replica config written by different versions never half-agree.
FORMAT = 1


class ReplicaConfigError(Exception):
    """A replica config that cannot be used; the message names the file and the problem."""


def secret_has_value(value: Optional[str]) -> bool:
    """Whether a secret's value counts as given.

    Truss configs list secret names with a placeholder (`null` or `""`), so neither of those
    is a value: such a secret must be supplied when the model runs. Anything else is one,
    which also means it must never be copied into an image.
    """
    return value not in (None, "")


@dataclass(frozen=True)
class ReplicaConfig:
    model_module_dir: str = "model"
    model_class_filename: str = "model.py"
    model_class_name: str = "Model"
    data_dir: str = "data"
    # Appended to sys.path in this order (the bundled one only if it exists).
    bundled_packages_dir: str = "packages"
    external_package_dirs: tuple[str, ...] = ()
    # Declared secret names -> the value written in config.yaml (None in an image: values are
    # supplied when a container starts, never baked in).
    secrets: dict[str, Optional[str]] = field(default_factory=dict)
    predict_concurrency: int = 1
    streaming_read_timeout: float = 60
    # The validated config.yaml as a dict (defaults filled in): the model's `config` argument.
    model_config: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps({"format": FORMAT, **asdict(self)}, indent=1, sort_keys=True)


def parse_replica_config(text: str, source: str = "replica config") -> ReplicaConfig:
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise ReplicaConfigError(f"{source}: not valid JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise ReplicaConfigError(f"{source}: expected a JSON object")
    if raw.get("format") != FORMAT:
        raise ReplicaConfigError(
            f"{source}: format {raw.get('format')!r}, this server reads format {FORMAT} "
            "(written by another truss-cli version; prepare the model again)"
        )
    known = {f.name for f in fields(ReplicaConfig)}
    values = {key: value for key, value in raw.items() if key in known}
    if isinstance(values.get("external_package_dirs"), list):
        values["external_package_dirs"] = tuple(values["external_package_dirs"])
    config = ReplicaConfig(**values)
    _check(config, source)
    return config


def read_replica_config(path: Path) -> ReplicaConfig:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ReplicaConfigError(f"{path}: cannot read the replica config: {exc.strerror or exc}") from None
    return parse_replica_config(text, str(path))


def _check(config: ReplicaConfig, source: str) -> None:
    # Written by our own CLI, so a wrong type is a bug or a hand edit: say which field.
    for name, kind in (
        ("model_module_dir", str), ("model_class_filename", str), ("model_class_name", str), ("data_dir", str),
        ("bundled_packages_dir", str), ("external_package_dirs", tuple),
        ("secrets", dict), ("model_config", dict),
    ):
        if not isinstance(getattr(config, name), kind):
            expected = "list" if kind is tuple else kind.__name__
            raise ReplicaConfigError(f"{source}: {name} must be a {expected}")
    if not all(isinstance(item, str) for item in config.external_package_dirs):
        raise ReplicaConfigError(f"{source}: external_package_dirs must be a list of paths")
    count = config.predict_concurrency
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ReplicaConfigError(f"{source}: predict_concurrency must be a whole number >= 1")
    timeout = config.streaming_read_timeout
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
        raise ReplicaConfigError(f"{source}: streaming_read_timeout must be a positive number")
