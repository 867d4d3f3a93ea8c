"""The per-deployment Kubernetes objects (runtimes/kubernetes/objects.py, quantities.py):
valid for the oldest and newest supported Kubernetes (strict schemas, offline), identical to
the reviewed golden files, and each choice a user or an operator would notice checked on its
own. No cluster runs here (docs/kubernetes.md)."""

from __future__ import annotations

import pytest

from kubernetes_support import assert_golden, kinds, validate_strict
from truss_cli.config import parse_config
from truss_cli.controlplane.runtimes.kubernetes import objects
from truss_cli.controlplane.runtimes.kubernetes.objects import ModelDeployment, deployment_objects
from truss_cli.controlplane.runtimes.kubernetes.quantities import container_resources, cpu_quantity, memory_quantity
from truss_cli.controlplane.runtimes.kubernetes.yaml_text import to_yaml
from truss_cli.errors import UsageError
from truss_cli.quantities import QuantityError
from truss_cli.server import protocol

DIGEST = "registry.example.com/truss/hello@sha256:" + "ab" * 32

CONFIGS = {
    "cpu-only": ("model_name: Hello World\nresources:\n  cpu: '500m'\n  memory: 512Mi\n", None),
    "gpu": ("model_name: llm\nresources:\n  cpu: 4\n  memory: 16Gi\n  accelerator: A10G:2\n", None),
    "secrets": ("model_name: with-secrets\nsecrets:\n  hf_access_token: null\n  api_key: default-value-in-config\n"
                "runtime:\n  health_checks:\n    startup_threshold_seconds: 600\n    restart_threshold_seconds: 60\n",
                "truss-secrets-abcd1234"),
    "custom-server": ("model_name: custom\ndocker_server:\n  start_command: python server.py\n  server_port: 9000\n"
                      "  predict_endpoint: /predict\n  readiness_endpoint: /ready\n  liveness_endpoint: /live\n", None),
}


def _objects(config_text: str, secret_name: str | None = None, **overrides) -> list[dict]:
    config = parse_config(config_text).config
    target = ModelDeployment(
        model_id="m4k2x9qa", model_name=config.model_name or "model", deployment_id="d7p3z1wb",
        deployment_name="deployment-3", image=DIGEST, namespace="models",
        secret_name=secret_name, **overrides,
    )
    return deployment_objects(target, config)


def _container(items: list[dict]) -> dict:
    return items[0]["spec"]["template"]["spec"]["containers"][0]


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_objects_are_valid_for_supported_kubernetes_and_match_their_golden_file(name):
    text, secret_name = CONFIGS[name]
    emitted = to_yaml(_objects(text, secret_name))
    documents = validate_strict(emitted)
    assert kinds(documents) == ["Deployment", "Service", "PodDisruptionBudget"]
    assert_golden(f"deployment-{name}.yaml", emitted)


def test_an_invalid_object_fails_the_validation_the_other_tests_rely_on():
    deployment = _objects(CONFIGS["cpu-only"][0])[0]
    deployment["spec"]["strategy"]["rollingUpdate"]["maxSurj"] = 1
    with pytest.raises(AssertionError, match="maxSurj"):
        validate_strict(to_yaml([deployment]))


@pytest.mark.parametrize("text, expected", [
    ("1", "1"), ("2", "2"), ("0.5", "500m"), ("1.5", "1500m"), ("500m", "500m"), ("250m", "250m"), ("1000m", "1"),
])
def test_cpu_amounts_become_kubernetes_quantities(text, expected):
    assert cpu_quantity(text) == expected


@pytest.mark.parametrize("text, expected", [
    ("2Gi", "2Gi"), ("512Mi", "512Mi"), ("1G", "1G"), ("2048Mi", "2Gi"), ("1000M", "1G"),
    ("1.5Gi", "1536Mi"), ("1K", "1k"), ("1000", "1k"), ("1536", "1536"),
])
def test_memory_amounts_become_kubernetes_quantities(text, expected):
    assert memory_quantity(text) == expected


def test_memory_in_milli_is_refused_with_what_was_meant():
    with pytest.raises(QuantityError, match="512Mi"):
        memory_quantity("512m")


def test_resources_are_guaranteed_and_gpus_are_a_limit():
    assert container_resources("1", "2Gi") == {"requests": {"cpu": "1", "memory": "2Gi"},
                                                "limits": {"cpu": "1", "memory": "2Gi"}}
    assert container_resources("4", "16Gi", "A100:2")["limits"]["nvidia.com/gpu"] == "2"
    assert container_resources("4", "16Gi", "T4")["limits"]["nvidia.com/gpu"] == "1"
    assert container_resources("4", "16Gi", None, use_gpu=True)["limits"]["nvidia.com/gpu"] == "1"
    assert "nvidia.com/gpu" not in container_resources("4", "16Gi", None)["requests"]
    with pytest.raises(QuantityError, match="A100:2"):
        container_resources("1", "1Gi", "A100:zero")


def test_gpu_pods_tolerate_the_gpu_taint_and_keep_the_type_in_an_annotation():
    deployment = _objects(CONFIGS["gpu"][0])[0]
    pod = deployment["spec"]["template"]
    assert pod["spec"]["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert pod["metadata"]["annotations"]["truss.dev/accelerator"] == "A10G:2"
    cpu_pod = _objects(CONFIGS["cpu-only"][0])[0]["spec"]["template"]["spec"]
    assert "tolerations" not in cpu_pod


def test_names_come_from_the_deployment_id_and_user_names_only_from_annotations():
    items = _objects("model_name: Hello World — ünïcode!\n")
    for item in items:
        assert item["metadata"]["name"] == "truss-deployment-d7p3z1wb"
        assert item["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "truss-cli",
                                              "truss.dev/model-id": "m4k2x9qa", "truss.dev/deployment-id": "d7p3z1wb"}
        assert item["metadata"]["annotations"]["truss.dev/model-name"] == "Hello World — ünïcode!"
    template = items[0]["spec"]["template"]["metadata"]
    assert template["labels"] == items[0]["metadata"]["labels"]
    assert items[0]["spec"]["selector"]["matchLabels"] == items[1]["spec"]["selector"] == items[2]["spec"]["selector"]["matchLabels"]
    validate_strict(to_yaml(items))


@pytest.mark.parametrize("bad_id", ["D7P3Z1WB", "has_underscore", "-leading", "x" * 60, ""])
def test_an_id_that_cannot_name_an_object_is_refused(bad_id):
    config = parse_config("model_name: m\n").config
    target = ModelDeployment(model_id="m4k2x9qa", model_name="m", deployment_id=bad_id, deployment_name="d",
                             image=DIGEST, namespace="models")
    with pytest.raises(UsageError, match="cannot name a Kubernetes object"):
        deployment_objects(target, config)


@pytest.mark.parametrize("image", ["registry.example.com/truss/hello:latest", "hello", "hello@sha256:abc"])
def test_an_image_not_referenced_by_digest_is_refused_with_how_to_get_one(image):
    config = parse_config("model_name: m\n").config
    target = ModelDeployment(model_id="m4k2x9qa", model_name="m", deployment_id="d7p3z1wb", deployment_name="d",
                             image=image, namespace="models")
    with pytest.raises(UsageError, match="not referenced by digest") as caught:
        deployment_objects(target, config)
    assert "truss image push" in caught.value.hint


def test_secrets_are_a_mounted_read_only_secret_never_a_value_in_the_objects():
    text, secret_name = CONFIGS["secrets"]
    items = _objects(text, secret_name)
    emitted = to_yaml(items)
    assert "default-value-in-config" not in emitted
    container = _container(items)
    pod = items[0]["spec"]["template"]["spec"]
    assert {"name": "secrets", "mountPath": "/run/truss/secrets", "readOnly": True} in container["volumeMounts"]
    assert {"name": "secrets", "secret": {"secretName": "truss-secrets-abcd1234", "defaultMode": 0o400}} in pod["volumes"]
    assert {"name": protocol.SECRETS_DIR_ENV, "value": "/run/truss/secrets"} in container["env"]
    assert not any(env["name"].startswith(protocol.SECRET_ENV_PREFIX) for env in container["env"])
    # The Secret's root-owned files are readable through the pod's group, which the server has.
    assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsGroup"] == 10001


def test_declared_secrets_without_a_kubernetes_secret_are_refused():
    with pytest.raises(UsageError, match="hf_access_token"):
        _objects(CONFIGS["secrets"][0], None)


def test_a_secret_name_that_cannot_be_a_secret_key_is_refused_by_name():
    with pytest.raises(UsageError, match="'my token'"):
        _objects('model_name: m\nsecrets:\n  "my token": null\n  ok_name: null\n', "truss-secrets-x")


def test_probes_use_the_servers_routes_and_config_thresholds():
    container = _container(_objects(CONFIGS["secrets"][0], "s"))
    assert container["startupProbe"]["httpGet"] == {"path": protocol.READINESS_PATH, "port": "http"}
    assert container["readinessProbe"]["httpGet"]["path"] == protocol.READINESS_PATH
    assert container["livenessProbe"]["httpGet"]["path"] == "/"
    # startup_threshold_seconds: 600 -> 60 checks of 10 s; restart_threshold_seconds: 60 -> 6.
    assert container["startupProbe"]["failureThreshold"] * container["startupProbe"]["periodSeconds"] == 600
    assert container["livenessProbe"]["failureThreshold"] * container["livenessProbe"]["periodSeconds"] == 60
    assert container["ports"] == [{"name": "http", "containerPort": protocol.DEFAULT_SERVER_PORT, "protocol": "TCP"}]


def test_a_restart_never_drops_capacity_and_pods_get_the_servers_drain_budget():
    deployment = _objects(CONFIGS["cpu-only"][0])[0]
    assert deployment["spec"]["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    pod = deployment["spec"]["template"]["spec"]
    # The grace period counts from the deletion, preStop hook included: after SIGTERM the
    # server still has the shutdown budget every other supervisor gives it.
    assert pod["terminationGracePeriodSeconds"] - objects.PRE_STOP_SECONDS == protocol.STOP_GRACE_SECONDS > protocol.DRAIN_SECONDS


def _pre_stop(config_text: str, **overrides) -> list[str]:
    container = _container(_objects(config_text, **overrides))
    assert list(container["lifecycle"]) == ["preStop"]
    return container["lifecycle"]["preStop"]["exec"]["command"]


@pytest.mark.parametrize("name", ["cpu-only", "custom-server"])
def test_a_deleted_pod_keeps_serving_until_the_gateway_can_have_heard_before_it_is_told_to_stop(name):
    # The kubelet SIGTERMs at the moment the endpoint turns terminating; the gateway's watch hears
    # it a moment later. The hook keeps the server serving meanwhile, on the Python the image's
    # replica runs on (present in every image we build, unlike `sleep`).
    command = _pre_stop(CONFIGS[name][0])
    assert command[0] == "/opt/truss/venv/bin/python"
    assert command[1:4] == ["-I", "-S", "-c"] and f"time.sleep({objects.PRE_STOP_SECONDS})" in command[4]
    assert objects.PRE_STOP_SECONDS >= 5


def test_a_development_pod_keeps_serving_before_it_stops_too():
    assert _pre_stop(CONFIGS["cpu-only"][0], **DEVELOPMENT)[0] == "/opt/truss/venv/bin/python"


def test_a_no_build_image_waits_on_its_own_python():
    no_build = ("model_name: custom\nbase_image:\n  image: ghcr.io/example/server:1\n{path}"
                "docker_server:\n  start_command: ./serve\n  server_port: 9000\n  no_build: true\n"
                "  predict_endpoint: /predict\n  readiness_endpoint: /ready\n  liveness_endpoint: /live\n")
    assert _pre_stop(no_build.format(path=""))[0] == "python3"
    assert _pre_stop(no_build.format(path="  python_executable_path: /usr/local/bin/python3.12\n"))[0] == "/usr/local/bin/python3.12"


def test_pods_run_unprivileged_and_a_model_server_on_a_read_only_root():
    model = _objects(CONFIGS["cpu-only"][0])[0]["spec"]["template"]["spec"]
    security = model["containers"][0]["securityContext"]
    assert security == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}}
    assert model["securityContext"]["runAsNonRoot"] is True and model["securityContext"]["runAsUser"] == 10001
    assert model["automountServiceAccountToken"] is False
    mounts = {mount["mountPath"] for mount in model["containers"][0]["volumeMounts"]}
    assert {"/tmp", "/home/truss"} <= mounts
    custom = _objects(CONFIGS["custom-server"][0])[0]["spec"]["template"]["spec"]
    assert custom["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is False
    assert custom["securityContext"]["runAsNonRoot"] is True


def test_the_disruption_budget_lets_a_drain_take_one_pod_at_a_time_at_any_count():
    budget = _objects(CONFIGS["cpu-only"][0])[2]
    assert budget["spec"]["maxUnavailable"] == 1 and "minAvailable" not in budget["spec"]


def test_the_applied_deployment_names_no_replica_count_so_a_reapply_never_resets_the_scale():
    """The count is the `scale` subresource's alone: a forced apply naming one would undo the autoscaler."""
    for text, secret_name in CONFIGS.values():
        assert "replicas" not in _objects(text, secret_name)[0]["spec"]


def test_the_service_is_headless_for_the_gateways_endpoint_slice_watch():
    service = _objects(CONFIGS["cpu-only"][0])[1]
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["ports"][0]["port"] == protocol.DEFAULT_SERVER_PORT


def test_image_pull_secrets_are_named_on_the_pod():
    pod = _objects(CONFIGS["cpu-only"][0], image_pull_secrets=("registry-login",))[0]["spec"]["template"]["spec"]
    assert pod["imagePullSecrets"] == [{"name": "registry-login"}]


def test_objects_are_the_same_every_time():
    text, secret_name = CONFIGS["secrets"]
    assert to_yaml(_objects(text, secret_name)) == to_yaml(_objects(text, secret_name))
    assert objects.object_name("d7p3z1wb") == "truss-deployment-d7p3z1wb"


# -- development deployments (docs/kubernetes.md, "Development deployments") ----------------

DEVELOPMENT = {"development": True, "control_token_secret": "truss-control-d7p3z1wb"}


def test_a_development_deployment_is_valid_and_matches_its_golden_file():
    text, secret_name = CONFIGS["secrets"]
    emitted = to_yaml(_objects(text, secret_name, **DEVELOPMENT))
    validate_strict(emitted)
    assert_golden("deployment-development.yaml", emitted)


def test_a_development_pod_runs_the_control_layer_on_an_empty_writable_tree_and_reads_its_token_from_a_secret():
    pod = _objects(CONFIGS["cpu-only"][0], **DEVELOPMENT)[0]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    command = container["command"]
    assert command[1:3] == ["-m", "truss_cli.server.control"] and command[3] == objects.DEVELOPMENT_TREE_DIR
    assert command[command.index("--control-port") + 1] == str(objects.CONTROL_PORT)
    token_file = command[command.index("--control-token-file") + 1]
    assert token_file == f"{objects.CONTROL_TOKEN_MOUNT}/{objects.CONTROL_TOKEN_KEY}"
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: volumes[m["name"]] for m in container["volumeMounts"]}
    assert mounts[objects.DEVELOPMENT_TREE_DIR] == {"name": "development-tree", "emptyDir": {}}
    assert mounts[objects.CONTROL_TOKEN_MOUNT]["secret"] == {"secretName": "truss-control-d7p3z1wb", "defaultMode": 0o400}
    assert {"name": "control", "containerPort": objects.CONTROL_PORT, "protocol": "TCP"} in container["ports"]
    # The token itself is in nothing the template holds, and the root filesystem stays read-only.
    assert "TOKEN" not in str(container["env"]).upper()
    assert container["securityContext"]["readOnlyRootFilesystem"] is True


def test_a_published_deployment_has_no_development_part():
    container = _container(_objects(CONFIGS["cpu-only"][0]))
    assert "command" not in container and [p["name"] for p in container["ports"]] == ["http"]


def test_a_development_deployment_needs_its_token_secret_and_a_model_server():
    with pytest.raises(UsageError, match="control token"):
        _objects(CONFIGS["cpu-only"][0], development=True)
    with pytest.raises(UsageError, match="custom server"):
        _objects(CONFIGS["custom-server"][0], **DEVELOPMENT)
