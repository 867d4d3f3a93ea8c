"""The schema of a model directory's `config.yaml`, and the one place that reads it.

The keys follow Truss's `config.yaml`, so existing Truss model directories load unchanged.
Only the CLI side imports it: a model server reads the replica config written from it
(`truss_cli.config_to_replica`), so the server never needs this module's pydantic 2.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, get_args

import yaml
from pydantic_core import PydanticCustomError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from truss_cli.quantities import Cpu, Memory, QuantityError, parse_cpu, parse_memory
# One rule for both sides of a replica; re-exported here, where the CLI side looks for it.
from truss_cli.server.replica_config import secret_has_value  # noqa: F401

CONFIG_FILENAME = "config.yaml"

# The Pythons a model can ask for (and the model server runs on): the local interpreter
# search and the image's base image follow this list.
PythonVersion = Literal["py39", "py310", "py311", "py312", "py313", "py314"]
SUPPORTED_PYTHON_VERSIONS: tuple[str, ...] = get_args(PythonVersion)
SUPPORTED_PYTHON_MINORS: tuple[tuple[int, int], ...] = tuple((3, int(name[3:])) for name in SUPPORTED_PYTHON_VERSIONS)
DEFAULT_PYTHON_VERSION: PythonVersion = "py311"

# Keys Truss writes into configs for its own bookkeeping. They change nothing here, so they
# are accepted silently instead of adding noise to the unknown-key warning.
_SILENT_TRUSS_KEYS = frozenset({"spec_version", "model_framework", "model_type", "input_type"})



class _Section(BaseModel):
    # Unknown keys are kept (not rejected) so they can be reported in one warning.
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class Resources(_Section):
    cpu: str = "1"
    memory: str = "2Gi"
    accelerator: Optional[str] = None
    use_gpu: bool = False
    # Baseten's machine choice: accepted, refused when used (truss_cli/unsupported_keys.py).
    instance_type: Optional[str] = None
    node_count: Optional[int] = Field(default=None, ge=1)
    fabric: Optional[dict[str, Any]] = None

    @field_validator("node_count", mode="before")
    @classmethod
    def _count_not_boolean(cls, value: Any) -> Any:
        return _refuse_boolean(value)

    @field_validator("cpu", "memory", mode="before")
    @classmethod
    def _numbers_as_strings(cls, value: Any) -> Any:
        # YAML reads `cpu: 2` as an int; Truss accepts it and so do we.
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        return value

    @field_validator("cpu")
    @classmethod
    def _check_cpu(cls, value: str) -> str:
        try:
            parse_cpu(value)
        except QuantityError as exc:
            raise ValueError(str(exc)) from None
        return value

    @field_validator("memory")
    @classmethod
    def _check_memory(cls, value: str) -> str:
        try:
            parse_memory(value)
        except QuantityError as exc:
            raise ValueError(str(exc)) from None
        return value

    @property
    def cpu_quantity(self) -> Cpu:
        return parse_cpu(self.cpu)

    @property
    def memory_quantity(self) -> Memory:
        return parse_memory(self.memory)

    @model_validator(mode="after")
    def _accelerator_implies_gpu(self) -> "Resources":
        if self.accelerator:
            self.use_gpu = True
        return self


def _refuse_boolean(value: Any) -> Any:
    # pydantic reads `true` as 1; for a count that is a typo, not a value.
    if isinstance(value, bool):
        raise PydanticCustomError("int_type", "expected an integer")
    return value


# Baseten's documented limit on restart_check_delay_seconds + restart_threshold_seconds.
MAX_RESTART_WINDOW_SECONDS = 1800


class HealthChecks(_Section):
    """When Baseten's probes act on a failing replica, in seconds (checked every 10 s).

    Validated here with the ranges Baseten documents (Truss itself checks none), so a config
    that would be refused at deploy time fails now. Nothing local acts on them: `truss run`
    and `truss image run` never stop traffic to or restart a replica. A control plane does.
    Unset means the platform's default.
    """

    restart_check_delay_seconds: Optional[int] = Field(default=None, ge=0, le=1800)
    restart_threshold_seconds: Optional[int] = Field(default=None, ge=30, le=1800)
    stop_traffic_threshold_seconds: Optional[int] = Field(default=None, ge=30, le=1800)
    startup_threshold_seconds: Optional[int] = Field(default=None, ge=10, le=3000)

    @field_validator(
        "restart_check_delay_seconds", "restart_threshold_seconds", "stop_traffic_threshold_seconds",
        "startup_threshold_seconds", mode="before",
    )
    @classmethod
    def _no_booleans(cls, value: Any) -> Any:
        return _refuse_boolean(value)

    @model_validator(mode="after")
    def _restart_window(self) -> "HealthChecks":
        delay, threshold = self.restart_check_delay_seconds, self.restart_threshold_seconds
        if delay is not None and threshold is not None and delay + threshold > MAX_RESTART_WINDOW_SECONDS:
            raise ValueError(
                f"restart_check_delay_seconds + restart_threshold_seconds: expected at most "
                f"{MAX_RESTART_WINDOW_SECONDS} together, got {delay} + {threshold} = {delay + threshold}"
            )
        return self


class Transport(_Section):
    kind: Literal["http", "websocket", "grpc"] = "http"
    ping_interval_seconds: Optional[float] = None
    ping_timeout_seconds: Optional[float] = None


class Runtime(_Section):
    predict_concurrency: int = Field(default=1, ge=1)
    streaming_read_timeout: int = Field(default=60, ge=1)
    health_checks: HealthChecks = Field(default_factory=HealthChecks)
    transport: Transport = Field(default_factory=Transport)
    # Kept for old configs: the server answers /v1/websocket whenever the model defines websocket().
    is_websocket_endpoint: Optional[bool] = None
    # Baseten platform features with no local counterpart: accepted, and do nothing here.
    enable_tracing_data: bool = False
    enable_debug_logs: bool = False
    oidc: Optional[dict[str, Any]] = None
    remote_ssh: Optional[dict[str, Any]] = None
    egress_restrictions: Optional[dict[str, Any]] = None
    truss_server_version_override: Optional[str] = None
    # Truss refuses anything but 1 (one worker per server) and so do we.
    num_workers: Optional[int] = None

    @field_validator("predict_concurrency", "streaming_read_timeout", "num_workers", mode="before")
    @classmethod
    def _no_booleans(cls, value: Any) -> Any:
        return _refuse_boolean(value)

    @field_validator("health_checks", "transport", mode="before")
    @classmethod
    def _empty_section(cls, value: Any) -> Any:
        # `health_checks:` with nothing after it is YAML null: the section's defaults.
        return {} if value is None else value

    @field_validator("num_workers")
    @classmethod
    def _one_worker(cls, value: Optional[int]) -> Optional[int]:
        if value is not None and value != 1:
            raise ValueError(
                f"expected 1 (one worker per model server, as in Truss; use predict_concurrency "
                f"or more replicas for concurrency), got {value}"
            )
        return value


# The only backend Truss has for external_data: a plain GET of a public http(s) URL.
HTTP_PUBLIC_BACKEND = "http_public"


class ExternalDataItem(_Section):
    """One file of `external_data`, downloaded into the data directory before the model runs."""

    url: str
    local_data_path: str
    name: Optional[str] = None
    backend: str = HTTP_PUBLIC_BACKEND

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        scheme, _, rest = value.partition("://")
        if scheme.lower() not in ("http", "https") or not rest.strip("/"):
            raise ValueError(f"expected an http:// or https:// URL, got {json.dumps(value)}")
        return value

    @field_validator("local_data_path")
    @classmethod
    def _inside_the_data_directory(cls, value: str) -> str:
        # The file lands at <data_dir>/<local_data_path>, on this machine and in images: it
        # must name a file strictly inside the data directory.
        parts = [part for part in re.split(r"[/\\]", value) if part not in ("", ".")]
        if value.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", value) or ".." in parts or not parts:
            raise ValueError(
                "expected a file path relative to the data directory (not absolute, without \"..\", not empty), "
                f"got {json.dumps(value)}"
            )
        return "/".join(parts)

    @field_validator("backend")
    @classmethod
    def _known_backend(cls, value: str) -> str:
        if value != HTTP_PUBLIC_BACKEND:
            raise ValueError(
                f"only {json.dumps(HTTP_PUBLIC_BACKEND)} (a public http(s) URL) is supported, got {json.dumps(value)}"
            )
        return value


class BaseImage(_Section):
    image: str = ""
    python_executable_path: str = ""
    # Baseten's registry credentials; the local Docker engine pulls with its own (docker login).
    docker_auth: Optional[dict[str, Any]] = None


class Build(_Section):
    model_server: Literal["TrussServer", "TRT_LLM"] = "TrussServer"
    arguments: dict[str, Any] = Field(default_factory=dict)
    secret_to_path_mapping: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _no_cache_is_a_flag(cls, data: Any) -> Any:
        if isinstance(data, dict) and "no_cache" in data:
            # As in Truss: whether to use the cache is a choice per build, not a property of the model.
            raise ValueError("no_cache is not a config.yaml key; pass --no-cache to `truss image build` instead")
        return data


# The port a replica listens on inside images (truss_cli.server.protocol.DEFAULT_SERVER_PORT;
# config.py may not import the server package): a custom server must listen on another one.
_REPLICA_PORT = 8080
# Truss refuses these ids: root, and the id its own images run unprivileged code as.
_REFUSED_USER_IDS = (0, 60000)


class DockerServer(_Section):
    """A custom HTTP server (`docker_server`) that replaces the model class: the replica starts
    `start_command` and serves Truss's routes in front of it (`truss_cli/server/custom/`)."""

    start_command: Optional[str] = None
    server_port: int
    predict_endpoint: str
    readiness_endpoint: str
    liveness_endpoint: str
    run_as_user_id: Optional[int] = None
    no_build: Optional[bool] = None

    @field_validator("server_port", "run_as_user_id", mode="before")
    @classmethod
    def _no_booleans(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise PydanticCustomError("int_type", "expected an integer")
        return value

    @field_validator("server_port")
    @classmethod
    def _port_in_range(cls, value: int) -> int:
        if not 1 <= value <= 65535:
            raise ValueError(f"expected a port between 1 and 65535, got {value}")
        if value == _REPLICA_PORT:
            raise ValueError(
                f"{value} is the port the replica itself listens on in images (its routes are served there "
                "in front of the custom server); make the custom server listen on another port, e.g. 8000"
            )
        return value

    @field_validator("predict_endpoint", "readiness_endpoint", "liveness_endpoint")
    @classmethod
    def _absolute_path(cls, value: str) -> str:
        if not value.startswith("/") or any(char.isspace() for char in value):
            raise ValueError(f"expected a path starting with \"/\" (without spaces), got {json.dumps(value)}")
        return value

    @field_validator("run_as_user_id")
    @classmethod
    def _allowed_user(cls, value: Optional[int]) -> Optional[int]:
        if value is not None and (value < 0 or value in _REFUSED_USER_IDS):
            raise ValueError(
                f"expected a user id other than 0 (root) and 60000 (reserved by Truss), got {value}"
            )
        return value


class TrussConfig(_Section):
    model_name: Optional[str] = None
    description: Optional[str] = None
    model_metadata: dict[str, Any] = Field(default_factory=dict)
    python_version: PythonVersion = DEFAULT_PYTHON_VERSION
    requirements: list[str] = Field(default_factory=list)
    requirements_file: Optional[str] = None
    system_packages: list[str] = Field(default_factory=list)
    environment_variables: dict[str, str] = Field(default_factory=dict)
    secrets: dict[str, Optional[str]] = Field(default_factory=dict)
    resources: Resources = Field(default_factory=Resources)
    runtime: Runtime = Field(default_factory=Runtime)
    build_commands: list[str] = Field(default_factory=list)
    base_image: Optional[BaseImage] = None
    docker_server: Optional[DockerServer] = None
    data_dir: str = "data"
    external_data: list[ExternalDataItem] = Field(default_factory=list)
    external_package_dirs: list[str] = Field(default_factory=list)
    model_module_dir: str = "model"
    model_class_filename: str = "model.py"
    model_class_name: str = "Model"
    bundled_packages_dir: str = "packages"
    examples_filename: str = "examples.yaml"
    live_reload: bool = False
    apply_library_patches: bool = True
    build: Build = Field(default_factory=Build)
    # Accepted so Truss configs load; a model that uses one is refused before anything is
    # built, with the reason (truss_cli/unsupported_keys.py, the one list of them).
    model_cache: list[dict[str, Any]] = Field(default_factory=list, )
    weights: list[dict[str, Any]] = Field(default_factory=list)
    trt_llm: Optional[dict[str, Any]] = None
    bis_llm: Optional[dict[str, Any]] = None
    training_checkpoints: Optional[dict[str, Any]] = None
    cache_internal: list[dict[str, Any]] = Field(default_factory=list)
    # Truss's switch for developing Truss itself; meaningless here.
    use_local_src: bool = False

    @field_validator("environment_variables", mode="before")
    @classmethod
    def _scalars_as_strings(cls, value: Any) -> Any:
        # Environment values are strings; YAML turns `WORKERS: 2` into an int.
        if isinstance(value, dict):
            return {
                key: (str(item).lower() if isinstance(item, bool) else str(item))
                if isinstance(item, (int, float, bool))
                else item
                for key, item in value.items()
            }
        return value

    @field_validator(
        "data_dir", "model_module_dir", "bundled_packages_dir", "model_class_filename",
        "examples_filename", "requirements_file",
    )
    @classmethod
    def _inside_the_model_directory(cls, value: Optional[str]) -> Optional[str]:
        # These name files that are copied into images and archives: they must stay inside.
        if value is not None and (value.startswith(("/", "\\")) or ".." in re.split(r"[/\\]", value)):
            raise ValueError(
                f'expected a path inside the model directory (relative, without ".."), got {json.dumps(value)}'
            )
        return value

    @model_validator(mode="before")
    @classmethod
    def _null_means_default(cls, data: Any) -> Any:
        # `requirements:` with nothing after it is YAML null; Truss reads it as the default.
        if isinstance(data, dict):
            if "hf_cache" in data and "model_cache" not in data:
                # Truss's former name for model_cache, still read by Truss.
                data = {("model_cache" if key == "hf_cache" else key): value for key, value in data.items()}
            return {
                key: value
                for key, value in data.items()
                if value is not None or key not in cls.model_fields or cls.model_fields[key].default is None
            }
        return data

    @model_validator(mode="after")
    def _requirements_are_exclusive(self) -> "TrussConfig":
        if self.requirements and self.requirements_file:
            raise ValueError("requirements_file: cannot be set together with requirements; use one of the two")
        return self

    @model_validator(mode="after")
    def _custom_server_has_a_command(self) -> "TrussConfig":
        server = self.docker_server
        if server is not None and not server.no_build and not (server.start_command or "").strip():
            raise ValueError(
                "docker_server.start_command: expected the command that starts the server "
                "(required unless docker_server.no_build is true)"
            )
        return self

    @model_validator(mode="after")
    def _external_data_paths_are_distinct(self) -> "TrussConfig":
        # Two downloads to one path, or one to a path inside another's file, cannot both land.
        seen: dict[str, int] = {}
        for index, item in enumerate(self.external_data):
            path = item.local_data_path
            for other_path, other in seen.items():
                if path == other_path:
                    raise ValueError(
                        f"external_data[{index}].local_data_path: {json.dumps(path)} is already the path of "
                        f"external_data[{other}]; each download needs its own path"
                    )
                inner, outer = sorted((path, other_path), key=len, reverse=True)
                if inner.startswith(outer + "/"):
                    raise ValueError(
                        f"external_data[{index}].local_data_path: {json.dumps(path)} and external_data[{other}]'s "
                        f"{json.dumps(other_path)} cannot both be files (one is inside the other)"
                    )
            seen[path] = index
        return self

    @property
    def python_minor(self) -> tuple[int, int]:
        """`py311` -> (3, 11)."""
        return 3, int(self.python_version[3:])

    @property
    def python_version_dotted(self) -> str:
        return f"3.{self.python_version[3:]}"


@dataclass
class LoadedConfig:
    config: TrussConfig
    path: Path
    warnings: list[str] = field(default_factory=list)

    @property
    def display_path(self) -> str:
        """The file as messages about it name it (relative to the working directory when below it)."""
        return _display_path(self.path)


class ConfigError(Exception):
    """A config.yaml that cannot be used. The message is ready to show to a user."""


def load_config(model_dir: Path | str) -> LoadedConfig:
    """Read and validate `<model_dir>/config.yaml`.

    Raises ConfigError with one message that names the file, the key path and what was
    expected. A missing file is an error too: a model directory is defined by it.
    """
    path = Path(model_dir) / CONFIG_FILENAME
    display = _display_path(path)
    if not path.is_file():
        if Path(model_dir).exists() and not Path(model_dir).is_dir():
            raise ConfigError(f"{model_dir}: is a file, not a model directory (give the directory that holds config.yaml)")
        if not Path(model_dir).is_dir():
            raise ConfigError(f"{model_dir}: no such directory")
        raise ConfigError(f"{display}: not found; a model directory needs a config.yaml (create one with `truss init`)")
    return parse_config(path.read_text(encoding="utf-8"), path)


def parse_config(text: str, path: Path | str = CONFIG_FILENAME) -> LoadedConfig:
    display = _display_path(Path(path))
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        context, start = getattr(exc, "context", None), getattr(exc, "context_mark", None)
        # The cause is often where the construct began (an unclosed bracket), not where it broke.
        if context and start is not None and (mark is None or start.line != mark.line):
            problem += f" ({context} that starts at line {start.line + 1}, column {start.column + 1})"
        raise ConfigError(f"{display}: {where}invalid YAML: {problem}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{display}: expected a mapping of keys to values at the top level, got {_describe(raw)}")
    try:
        config = TrussConfig.model_validate(raw)
    except ValidationError as exc:
        # Every problem at once, one line each, so a user fixes them in one go.
        raise ConfigError("\n".join(f"{display}: {_explain(error)}" for error in exc.errors())) from None
    unknown = sorted(_unknown_keys(config))
    warnings = []
    if unknown:
        warnings.append(f"{display}: ignoring unknown key{'s' if len(unknown) > 1 else ''}: {', '.join(unknown)}")
    return LoadedConfig(config=config, path=Path(path), warnings=warnings)


def _unknown_keys(section: BaseModel, prefix: str = "") -> list[str]:
    found = [
        f"{prefix}{key}"
        for key in (section.model_extra or {})
        if not (prefix == "" and key in _SILENT_TRUSS_KEYS)
    ]
    for name in type(section).model_fields:
        value = getattr(section, name)
        if isinstance(value, _Section):
            found.extend(_unknown_keys(value, f"{prefix}{name}."))
    return found


_EXPECTED_BY_ERROR_TYPE = {
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "string_type": "a string",
    "list_type": "a list",
    "dict_type": "a mapping of keys to values",
    "model_type": "a mapping of keys to values",
    "model_attributes_type": "a mapping of keys to values",
}


def _explain(error: dict[str, Any]) -> str:
    """Turn one pydantic error into `key.path: expected X, got Y`."""
    loc = _key_path(error["loc"])
    kind = error["type"]
    ctx = error.get("ctx") or {}
    bounds = _bounds_of(error["loc"])
    # A mistyped secret is still a secret: say what kind of value it is, never the value.
    secret = len(error["loc"]) > 1 and error["loc"][0] == "secrets"
    given = _kind_of(error.get("input")) if secret else _describe(error.get("input"))
    if kind in _EXPECTED_BY_ERROR_TYPE:
        expected = _EXPECTED_BY_ERROR_TYPE[kind] + bounds
        message = f"expected {expected}, got {given}"
    elif kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        message = f"expected {_EXPECTED_BY_ERROR_TYPE['int_type']}{bounds}, got {given}"
    elif kind == "literal_error":
        message = f"expected one of {ctx.get('expected', '')}, got {given}"
    elif kind == "missing":
        message = "required"
    elif kind == "value_error":
        message = str(ctx.get("error", error["msg"]))
    else:
        message = f"{error['msg'][:1].lower()}{error['msg'][1:]}, got {given}"
    return f"{loc}: {message}" if loc else message


def _kind_of(value: Any) -> str:
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, (dict, list)):
        return _describe(value)
    return "a value of another type"


def _key_path(loc: tuple[Any, ...]) -> str:
    """("requirements", 0) -> "requirements[0]"; ("runtime", "x") -> "runtime.x"."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def _bounds_of(loc: tuple[Any, ...]) -> str:
    """The numeric bounds declared on the field at `loc`, as ` >= 1` text."""
    model: Any = TrussConfig
    info = None
    for part in loc:
        fields = getattr(model, "model_fields", None)
        if not fields or part not in fields:
            return ""
        info = fields[part]
        model = info.annotation
    if info is None:
        return ""
    found = {}
    for item in info.metadata:
        for attr in ("ge", "gt", "le", "lt"):
            if getattr(item, attr, None) is not None:
                found[attr] = getattr(item, attr)
    if "ge" in found and "le" in found:
        return f" from {found['ge']} to {found['le']}"
    symbols = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}
    return "".join(f" {symbols[attr]} {bound}" for attr, bound in found.items())


def _describe(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return "a mapping" if isinstance(value, dict) else "a list"
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


def _display_path(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)

