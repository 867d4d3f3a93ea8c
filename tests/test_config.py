"""config.yaml parsing: Truss's keys, defaults, and one clear error per broken file."""

from __future__ import annotations

from pathlib import Path

import pytest

from truss_cli.config import ConfigError, load_config, parse_config, secret_has_value

EXAMPLE_TRUSS_CONFIG = """
model_name: sentiment
description: A text classifier.
model_metadata: {example_model_input: {text: hi}}
python_version: py310
requirements:
  - scikit-learn==1.5.2
system_packages: [jq]
environment_variables: {WORKERS: 2, DEBUG: true, NAME: x}
secrets: {hf_access_token: null}
resources: {cpu: "500m", memory: 4Gi, accelerator: "A10G:2"}
runtime: {predict_concurrency: 4, streaming_read_timeout: 30}
build_commands: ["echo built"]
base_image: {image: "python:3.10-slim", python_executable_path: /usr/local/bin/python}
data_dir: assets
external_package_dirs: [../shared]
model_module_dir: src
model_class_filename: net.py
model_class_name: Net
bundled_packages_dir: vendored
examples_filename: samples.yaml
live_reload: true
apply_library_patches: false
spec_version: "2.0"
model_framework: custom
"""


def test_every_truss_key_is_read():
    config = parse_config(EXAMPLE_TRUSS_CONFIG).config
    assert config.model_name == "sentiment"
    assert config.python_minor == (3, 10)
    assert config.requirements == ["scikit-learn==1.5.2"]
    assert config.environment_variables == {"WORKERS": "2", "DEBUG": "true", "NAME": "x"}
    assert config.secrets == {"hf_access_token": None}
    assert (config.resources.cpu, config.resources.memory, config.resources.accelerator) == ("500m", "4Gi", "A10G:2")
    assert config.resources.use_gpu is True  # an accelerator implies a GPU
    assert config.runtime.predict_concurrency == 4
    assert config.runtime.streaming_read_timeout == 30
    assert config.base_image is not None and config.base_image.python_executable_path == "/usr/local/bin/python"
    assert (config.model_module_dir, config.model_class_filename, config.model_class_name) == ("src", "net.py", "Net")
    assert (config.data_dir, config.bundled_packages_dir, config.examples_filename) == ("assets", "vendored", "samples.yaml")
    assert config.external_package_dirs == ["../shared"]
    assert config.live_reload is True and config.apply_library_patches is False


def test_truss_bookkeeping_keys_do_not_warn():
    assert parse_config(EXAMPLE_TRUSS_CONFIG).warnings == []


def test_empty_file_gives_defaults():
    config = parse_config("").config
    assert config.python_version == "py311"
    assert config.runtime.predict_concurrency == 1
    assert (config.model_module_dir, config.model_class_filename, config.model_class_name) == ("model", "model.py", "Model")


def test_keys_left_empty_mean_the_default():
    config = parse_config("requirements:\nsecrets:\nenvironment_variables:\n").config
    assert config.requirements == [] and config.secrets == {} and config.environment_variables == {}


def test_unknown_keys_give_one_warning_naming_each():
    loaded = parse_config("model_name: x\nfoo: 1\nresources:\n  gpus: 2\n")
    assert loaded.warnings == ["config.yaml: ignoring unknown keys: foo, resources.gpus"]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("runtime:\n  predict_concurrency: two\n",
         'config.yaml: runtime.predict_concurrency: expected an integer >= 1, got "two"'),
        ("runtime:\n  predict_concurrency: 0\n",
         "config.yaml: runtime.predict_concurrency: expected an integer >= 1, got 0"),
        ("python_version: py38\n",
         "config.yaml: python_version: expected one of 'py39', 'py310', 'py311', 'py312', 'py313' or 'py314', got \"py38\""),
        ("requirements: numpy\n", 'config.yaml: requirements: expected a list, got "numpy"'),
        ("secrets: [token]\n", "config.yaml: secrets: expected a mapping of keys to values, got a list"),
        ("live_reload: maybe\n", 'config.yaml: live_reload: expected true or false, got "maybe"'),
        ("resources:\n  memory: lots\n",
         'config.yaml: resources.memory: expected a memory size such as "512Mi", "2Gi" or "1G", got "lots"'),
        ("resources:\n  memory: 512m\n",
         'config.yaml: resources.memory: "512m" means 0.512 bytes ("m" is milli in Kubernetes quantities); '
         "for 512 MB write 512Mi (binary) or 512M (decimal)"),
        ("resources:\n  memory: 2gb\n",
         "config.yaml: resources.memory: \"2gb\": unknown unit 'gb' (units are case-sensitive); "
         "for 2 GB write 2Gi (binary) or 2G (decimal)"),
        ("resources:\n  cpu: 2 cores\n",
         'config.yaml: resources.cpu: expected a CPU count such as "1", "0.5" or "500m", got "2 cores"'),
        ("resources:\n  cpu: 0\n",
         'config.yaml: resources.cpu: expected a CPU count above zero such as "1", "0.5" or "500m", got "0"'),
        ("runtime: 3\n", "config.yaml: runtime: expected a mapping of keys to values, got 3"),
        ("- a\n- b\n", "config.yaml: expected a mapping of keys to values at the top level, got a list"),
        ("requirements: [numpy]\nrequirements_file: requirements.txt\n",
         "config.yaml: requirements_file: cannot be set together with requirements; use one of the two"),
        ("runtime:\n  predict_concurrency: true\n",
         "config.yaml: runtime.predict_concurrency: expected an integer >= 1, got true"),
        ("requirements: [numpy, [scipy]]\n", "config.yaml: requirements[1]: expected a string, got a list"),
        ("data_dir: /etc\n",
         'config.yaml: data_dir: expected a path inside the model directory (relative, without ".."), got "/etc"'),
        ("model_module_dir: ../elsewhere\n",
         'config.yaml: model_module_dir: expected a path inside the model directory (relative, without ".."), '
         'got "../elsewhere"'),
        ("requirements_file: ../requirements.txt\n",
         'config.yaml: requirements_file: expected a path inside the model directory (relative, without ".."), '
         'got "../requirements.txt"'),
    ],
)
def test_invalid_values_name_the_key_and_what_was_expected(text, expected):
    with pytest.raises(ConfigError) as caught:
        parse_config(text)
    assert str(caught.value) == expected


@pytest.mark.parametrize(
    ("cpu", "memory", "nano_cpus", "memory_bytes"),
    [
        ('"500m"', "512Mi", 500_000_000, 512 * 2**20),
        ("0.5", "2Gi", 500_000_000, 2 * 2**30),
        ("2", "1G", 2_000_000_000, 10**9),
        ("1.5", "1000", 1_500_000_000, 1000),
    ],
)
def test_resources_are_read_as_kubernetes_quantities(cpu, memory, nano_cpus, memory_bytes):
    resources = parse_config(f"resources:\n  cpu: {cpu}\n  memory: {memory}\n").config.resources
    assert resources.cpu_quantity.nano_cpus == nano_cpus
    assert resources.memory_quantity.bytes == memory_bytes


def test_a_secret_has_a_value_unless_it_is_null_or_empty():
    assert [secret_has_value(value) for value in (None, "", "x", " ")] == [False, False, True, True]


def test_every_invalid_value_is_reported_at_once():
    with pytest.raises(ConfigError) as caught:
        parse_config("runtime:\n  predict_concurrency: two\n  streaming_read_timeout: 0\nlive_reload: maybe\n")
    assert str(caught.value).splitlines() == [
        'config.yaml: runtime.predict_concurrency: expected an integer >= 1, got "two"',
        "config.yaml: runtime.streaming_read_timeout: expected an integer >= 1, got 0",
        'config.yaml: live_reload: expected true or false, got "maybe"',
    ]


def test_a_mistyped_secret_value_is_never_echoed():
    with pytest.raises(ConfigError) as caught:
        parse_config("secrets:\n  hf_token: 918273645\n")
    assert str(caught.value) == "config.yaml: secrets.hf_token: expected a string, got a number"
    assert "918273645" not in str(caught.value)


def test_yaml_syntax_error_names_the_line_and_where_the_construct_began():
    with pytest.raises(ConfigError) as caught:
        parse_config("model_name: x\nrequirements: [numpy\nruntime: {}\n")
    assert str(caught.value) == (
        "config.yaml: line 3, column 8: invalid YAML: expected ',' or ']', but got ':' "
        "(while parsing a flow sequence that starts at line 2, column 15)"
    )


def test_paths_inside_the_model_directory_are_accepted():
    config = parse_config("data_dir: assets/images\nrequirements_file: deps/requirements.txt\n").config
    assert (config.data_dir, config.requirements_file) == ("assets/images", "deps/requirements.txt")


def test_load_config_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.yaml").write_text("runtime:\n  streaming_read_timeout: -1\n")
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "m")
    assert str(caught.value) == "m/config.yaml: runtime.streaming_read_timeout: expected an integer >= 1, got -1"


def test_missing_config_and_missing_directory(tmp_path: Path):
    with pytest.raises(ConfigError, match="config.yaml: not found"):
        load_config(tmp_path)
    with pytest.raises(ConfigError, match="no such directory"):
        load_config(tmp_path / "absent")
    (tmp_path / "config.yaml").write_text("model_name: x\n")
    with pytest.raises(ConfigError, match="is a file, not a model directory"):
        load_config(tmp_path / "config.yaml")


def test_health_checks_are_kept_for_the_control_plane():
    text = (
        "runtime:\n  health_checks:\n    restart_check_delay_seconds: 0\n    restart_threshold_seconds: 1800\n"
        "    stop_traffic_threshold_seconds: 30\n    startup_threshold_seconds: 3000\n"
    )
    checks = parse_config(text).config.runtime.health_checks
    assert (checks.restart_check_delay_seconds, checks.restart_threshold_seconds) == (0, 1800)
    assert (checks.stop_traffic_threshold_seconds, checks.startup_threshold_seconds) == (30, 3000)


def test_health_checks_left_unset_mean_the_platforms_defaults():
    checks = parse_config("runtime:\n  health_checks:\n").config.runtime.health_checks
    assert checks.restart_threshold_seconds is None and checks.startup_threshold_seconds is None


@pytest.mark.parametrize(
    "checks, expected",
    [
        ("restart_threshold_seconds: 10",
         "runtime.health_checks.restart_threshold_seconds: expected an integer from 30 to 1800, got 10"),
        ("stop_traffic_threshold_seconds: 1801",
         "runtime.health_checks.stop_traffic_threshold_seconds: expected an integer from 30 to 1800, got 1801"),
        ("restart_check_delay_seconds: -1",
         "runtime.health_checks.restart_check_delay_seconds: expected an integer from 0 to 1800, got -1"),
        ("startup_threshold_seconds: 5",
         "runtime.health_checks.startup_threshold_seconds: expected an integer from 10 to 3000, got 5"),
        ("startup_threshold_seconds: true",
         "runtime.health_checks.startup_threshold_seconds: expected an integer from 10 to 3000, got true"),
        ("restart_check_delay_seconds: 600, restart_threshold_seconds: 1500",
         "runtime.health_checks: restart_check_delay_seconds + restart_threshold_seconds: "
         "expected at most 1800 together, got 600 + 1500 = 2100"),
    ],
)
def test_health_checks_outside_basetens_documented_ranges_are_refused(checks, expected):
    with pytest.raises(ConfigError) as caught:
        parse_config(f"runtime:\n  health_checks: {{{checks}}}\n")
    assert str(caught.value) == f"config.yaml: {expected}"


TRUSS_PLATFORM_KEYS = """
hf_cache: [{repo_id: openai/whisper-tiny, use_volume: false}]
weights: [{source: "hf://org/model@main", mount_location: /models/m}]
trt_llm: {build: {base_model: decoder}}
bis_llm: {version: "1"}
training_checkpoints: {download_folder: /tmp/ckpt}
cache_internal: []
use_local_src: false
resources: {instance_type: "L4:4x16", node_count: 2, fabric: {use_rdma: true}}
runtime:
  transport: {kind: websocket, ping_interval_seconds: 5}
  is_websocket_endpoint: true
  enable_tracing_data: true
  enable_debug_logs: true
  oidc: {enabled: true}
  remote_ssh: {enabled: false}
  egress_restrictions: {fqdn_allow_list: ["*.baseten.co"]}
  truss_server_version_override: "0.9.0"
  num_workers: 1
base_image: {image: "python:3.11-slim", docker_auth: {auth_method: REGISTRY_SECRET, secret_name: reg}}
build: {model_server: TrussServer, arguments: {}, secret_to_path_mapping: {token: /run/token}}
"""


def test_truss_platform_keys_are_accepted_without_a_warning():
    loaded = parse_config(TRUSS_PLATFORM_KEYS)
    assert loaded.warnings == []
    config = loaded.config
    assert config.model_cache == [{"repo_id": "openai/whisper-tiny", "use_volume": False}]  # hf_cache: its old name
    assert config.runtime.transport.kind == "websocket"
    assert config.resources.node_count == 2
    assert config.build.secret_to_path_mapping == {"token": "/run/token"}


@pytest.mark.parametrize(
    "text, expected",
    [
        ("build:\n  no_cache: true\n",
         "build: no_cache is not a config.yaml key; pass --no-cache to `truss image build` instead"),
        ("runtime:\n  num_workers: 2\n",
         "runtime.num_workers: expected 1 (one worker per model server, as in Truss; use predict_concurrency "
         "or more replicas for concurrency), got 2"),
        ("model_cache: [openai/whisper-tiny]\n", 'model_cache[0]: expected a mapping of keys to values, got "openai/whisper-tiny"'),
        ("resources:\n  node_count: 0\n", "resources.node_count: expected an integer >= 1, got 0"),
        ("runtime:\n  transport: {kind: tcp}\n",
         "runtime.transport.kind: expected one of 'http', 'websocket' or 'grpc', got \"tcp\""),
    ],
)
def test_truss_platform_keys_get_their_shape_checked(text, expected):
    with pytest.raises(ConfigError) as caught:
        parse_config(text)
    assert str(caught.value) == f"config.yaml: {expected}"


_DOCKER_SERVER = "docker_server:\n  start_command: python server.py\n  server_port: 8000\n  predict_endpoint: /predict\n  readiness_endpoint: /health\n  liveness_endpoint: /health\n"


def test_docker_server_is_read_with_truss_fields() -> None:
    server = parse_config(_DOCKER_SERVER + "  run_as_user_id: 1000\n").config.docker_server
    assert server is not None
    assert (server.start_command, server.server_port, server.predict_endpoint, server.run_as_user_id, server.no_build) == (
        "python server.py", 8000, "/predict", 1000, None,
    )


@pytest.mark.parametrize(
    "change, message",
    [
        (("  start_command: python server.py\n", ""),
         "config.yaml: docker_server.start_command: expected the command that starts the server (required unless docker_server.no_build is true)"),
        (("  predict_endpoint: /predict\n", ""), "config.yaml: docker_server.predict_endpoint: required"),
        (("/predict", "predict"), 'config.yaml: docker_server.predict_endpoint: expected a path starting with "/" (without spaces), got "predict"'),
        (("8000", "70000"), "config.yaml: docker_server.server_port: expected a port between 1 and 65535, got 70000"),
        (("8000", "8080"), "config.yaml: docker_server.server_port: 8080 is the port the replica itself listens on in images"),
        (("8000", "true"), "config.yaml: docker_server.server_port: expected an integer, got true"),
        (("liveness_endpoint: /health\n", "liveness_endpoint: /health\n  run_as_user_id: 60000\n"),
         "config.yaml: docker_server.run_as_user_id: expected a user id other than 0 (root) and 60000 (reserved by Truss), got 60000"),
    ],
)
def test_docker_server_errors_name_the_key(change: tuple[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(_DOCKER_SERVER.replace(*change))
    assert str(caught.value).startswith(message)


def test_no_build_needs_no_start_command() -> None:
    config = parse_config(_DOCKER_SERVER.replace("start_command: python server.py", "no_build: true")).config
    assert config.docker_server is not None and config.docker_server.no_build


def test_the_replica_port_config_refuses_is_the_one_replicas_listen_on() -> None:
    from truss_cli import config
    from truss_cli.server.protocol import DEFAULT_SERVER_PORT

    assert config._REPLICA_PORT == DEFAULT_SERVER_PORT
