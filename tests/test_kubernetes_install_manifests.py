"""`truss server manifests` (runtimes/kubernetes/install_manifests.py): the control plane's own
manifests, valid for the oldest and newest supported Kubernetes (strict schemas, offline),
identical to the reviewed golden files in both database modes, and safe with the database's
credentials. No cluster runs here (docs/kubernetes.md)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from kubernetes_support import assert_golden, kinds, validate_strict
from truss_cli.cli.app import app
from truss_cli.controlplane.runtimes.kubernetes.install_manifests import InstallOptions, install_manifests
from truss_cli.controlplane.runtimes.kubernetes.yaml_text import to_yaml
from truss_cli.errors import UsageError

IMAGE = "registry.example.com/truss/truss-cli@sha256:" + "cd" * 32
REGISTRY = "registry.example.com/models"
URL = "postgresql://truss:s3cr3t-pass@db.example.com:5432/truss"
runner = CliRunner()


def manifests(*args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(app, ["server", "manifests", "--namespace", "truss", "--image", IMAGE, "--registry", REGISTRY, *args],
                         env={"COLUMNS": "200"})


def by_kind(documents: list[dict], kind: str, name: str | None = None) -> dict:
    found = [d for d in documents if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"{len(found)} {kind} objects named {name}"
    return found[0]


def test_manifests_with_a_database_url_are_valid_and_match_their_golden_file():
    text = to_yaml(install_manifests(InstallOptions(namespace="truss", image=IMAGE, registry=REGISTRY, database_url=URL,
                                                    host="truss.example.com", ingress_class="nginx")))
    documents = validate_strict(text)
    assert kinds(documents) == ["Secret", "ServiceAccount", "Role", "RoleBinding", "PersistentVolumeClaim",
                                "Deployment", "Service", "Ingress"]
    assert_golden("install-database-url.yaml", text)


def test_manifests_with_postgres_are_valid_and_match_their_golden_file():
    text = to_yaml(install_manifests(InstallOptions(
        namespace="truss", image=IMAGE, registry="registry.internal:5000/models", with_postgres=True, create_namespace=True,
        postgres_password="golden-password-not-random", image_pull_secrets=("registry-login", "mirror-login"),
        insecure_registry=True)))
    documents = validate_strict(text)
    assert kinds(documents) == ["Namespace", "Secret", "Service", "StatefulSet", "ServiceAccount", "Role", "RoleBinding",
                                "PersistentVolumeClaim", "Deployment", "Service", "Ingress"]
    assert_golden("install-with-postgres.yaml", text)


def test_the_cli_prints_valid_yaml_on_stdout_from_a_real_process(tmp_path: Path):
    done = subprocess.run(
        [sys.executable, "-m", "truss_cli", "server", "manifests", "--namespace", "models", "--image", IMAGE,
         "--registry", REGISTRY, "--with-postgres", "--host", "truss.example.com"],
        capture_output=True, text=True, timeout=120, env={**os.environ, "HOME": str(tmp_path)},
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    documents = validate_strict(done.stdout)
    assert {d["metadata"].get("namespace") for d in documents} == {"models"}
    assert by_kind(documents, "Ingress")["spec"]["rules"][0]["host"] == "truss.example.com"


def test_the_generated_password_is_only_in_its_secret_and_new_each_time():
    first, second = manifests("--with-postgres"), manifests("--with-postgres")
    assert first.exit_code == 0 and second.exit_code == 0, first.output
    documents = list(yaml.safe_load_all(first.stdout))
    password = by_kind(documents, "Secret", "truss-postgres")["stringData"]["password"]
    assert len(password) >= 40
    assert first.stdout.count(password) == 1
    assert password not in second.stdout
    # The control plane builds its URL from the Secret; no value is written in the Deployment.
    env = by_kind(documents, "Deployment")["spec"]["template"]["spec"]["containers"][0]["env"]
    assert env[0] == {"name": "TRUSS_DATABASE_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "truss-postgres", "key": "password"}}}
    assert env[1]["value"] == "postgresql://truss:$(TRUSS_DATABASE_PASSWORD)@truss-postgres:5432/truss"
    postgres = by_kind(documents, "StatefulSet")["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "POSTGRES_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "truss-postgres", "key": "password"}}} in postgres


def test_a_database_url_is_only_in_its_secret():
    result = manifests("--database-url", URL)
    assert result.exit_code == 0, result.output
    assert result.stdout.count("s3cr3t-pass") == 1
    documents = list(yaml.safe_load_all(result.stdout))
    assert by_kind(documents, "Secret")["stringData"] == {"url": URL}
    container = by_kind(documents, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert {"name": "TRUSS_DATABASE_URL", "valueFrom": {"secretKeyRef": {"name": "truss-control-plane-database", "key": "url"}}} in container["env"]
    assert "StatefulSet" not in kinds(documents)


def test_both_database_choices_or_neither_exit_2_saying_what_to_do():
    both = manifests("--database-url", URL, "--with-postgres")
    assert both.exit_code == 2
    assert "--database-url and --with-postgres" in both.output and both.stdout == ""
    neither = manifests()
    assert neither.exit_code == 2
    assert "--database-url" in neither.output and "--with-postgres" in neither.output and "SQLite" in neither.output


@pytest.mark.parametrize("args, message", [
    (["--database-url", "sqlite:///var/lib/truss.db"], "expected a PostgreSQL URL"),
    (["--with-postgres", "--host", "https://truss.example.com"], "--host"),
    (["--with-postgres", "--volume-size", "10gb"], "--volume-size"),
])
def test_bad_values_are_named(args, message):
    result = manifests(*args)
    assert result.exit_code == 2 and message in result.output and result.stdout == ""


def test_a_namespace_that_cannot_exist_is_refused():
    with pytest.raises(UsageError, match="--namespace 'Truss_NS'"):
        install_manifests(InstallOptions(namespace="Truss_NS", image=IMAGE, registry=REGISTRY, with_postgres=True))


def test_the_control_plane_runs_the_kubernetes_runtime_in_its_namespace_alone():
    documents = list(yaml.safe_load_all(manifests("--with-postgres").stdout))
    deployment = by_kind(documents, "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    command = container["command"] + container["args"]
    assert command[:4] == ["truss", "server", "start", "--foreground"]
    assert command[command.index("--runtime") + 1] == "kubernetes"
    assert command[command.index("--namespace") + 1] == "truss"
    # The URL (with its password) reaches it in the environment, never on its command line.
    assert "--database-url" not in command and not any("DATABASE_URL" in part for part in command)
    assert "TRUSS_DATABASE_URL" in {variable["name"] for variable in container["env"]}
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"] == {"type": "Recreate"}
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "truss-control-plane"
    assert {"name": "data", "persistentVolumeClaim": {"claimName": "truss-control-plane-data"}} in pod["volumes"]
    assert "ClusterRole" not in kinds(documents) and "ClusterRoleBinding" not in kinds(documents)
    # The control plane's own objects are never labelled as the runtime's.
    assert all("app.kubernetes.io/managed-by" not in d["metadata"].get("labels", {}) for d in documents)


def test_the_role_grants_what_the_runtime_needs_and_nothing_else():
    documents = list(yaml.safe_load_all(manifests("--with-postgres").stdout))
    rules = by_kind(documents, "Role")["rules"]
    granted = {(group, resource): set(rule["verbs"]) for rule in rules
               for group in rule["apiGroups"] for resource in rule["resources"]}
    assert set(granted) == {
        ("apps", "deployments"), ("apps", "deployments/scale"), ("", "services"), ("policy", "poddisruptionbudgets"),
        ("", "secrets"), ("", "pods"), ("", "pods/log"), ("discovery.k8s.io", "endpointslices"),
    }
    assert granted[("discovery.k8s.io", "endpointslices")] == {"get", "list", "watch"}
    # The runtime annotates pods (its claim, pod-deletion-cost) and deletes a stopped replica's; never creates one.
    assert granted[("", "pods")] == {"get", "list", "watch", "patch", "delete"}
    assert granted[("", "pods/log")] == {"get"}
    assert "watch" not in granted[("", "secrets")]
    assert all("*" not in verbs for verbs in granted.values())


# -- builds inside the cluster: the Docker engine sidecar, or an engine elsewhere -------------


def test_manifests_with_an_engine_elsewhere_are_valid_and_match_their_golden_file():
    text = to_yaml(install_manifests(InstallOptions(
        namespace="truss", image=IMAGE, registry=REGISTRY, database_url=URL, create_namespace=True,
        docker_host="tcp://docker-builder.build.svc:2375", image_pull_secrets=("registry-login",))))
    documents = validate_strict(text)
    assert_golden("install-docker-host.yaml", text)
    # No sidecar, nothing privileged: the namespace enforces `restricted` as before.
    pod = by_kind(documents, "Deployment")["spec"]["template"]["spec"]
    assert "initContainers" not in pod and "privileged" not in text
    assert by_kind(documents, "Namespace")["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    container = pod["containers"][0]
    assert {"name": "DOCKER_HOST", "value": "tcp://docker-builder.build.svc:2375"} in container["env"]


def control_plane_pod(*args: str) -> dict:
    result = manifests("--with-postgres", *args)
    assert result.exit_code == 0, result.output
    return by_kind(list(yaml.safe_load_all(result.stdout)), "Deployment")["spec"]["template"]["spec"]


def test_the_control_plane_builds_with_a_sidecar_engine_reachable_only_through_a_shared_socket():
    pod = control_plane_pod()
    [sidecar] = pod["initContainers"]
    [control_plane] = pod["containers"]
    # A native sidecar: it starts (and answers) before the control plane, and outlives it.
    assert sidecar["restartPolicy"] == "Always"
    assert "docker" in sidecar["startupProbe"]["exec"]["command"]
    # dockerd listens on a unix socket only (no tcp:// host: nothing else in the cluster reaches
    # it), owned by the control plane's group, in an emptyDir the two containers share.
    hosts = [arg for arg in sidecar["args"] if arg.startswith("--host")]
    assert hosts == ["--host=unix:///run/truss-docker/docker.sock"]
    assert "--group=10001" in sidecar["args"] and "tcp://" not in str(sidecar)
    assert {"name": "DOCKER_HOST", "value": "unix:///run/truss-docker/docker.sock"} in control_plane["env"]
    assert {"name": "docker-socket", "mountPath": "/run/truss-docker"} in sidecar["volumeMounts"]
    assert {"name": "docker-socket", "mountPath": "/run/truss-docker"} in control_plane["volumeMounts"]
    assert {"name": "docker-socket", "emptyDir": {}} in pod["volumes"]
    # Only the engine is privileged; the control plane runs as 10001, as restricted as before.
    assert sidecar["securityContext"]["privileged"] is True
    assert control_plane["securityContext"] == {
        "runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001, "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}}
    assert pod["securityContext"]["fsGroup"] == 10001
    # A plain-HTTP registry is the user's to declare; none is assumed.
    assert not any(arg.startswith("--insecure-registry") for arg in sidecar["args"])
    assert "--insecure-registry=registry.example.com" in control_plane_pod("--insecure-registry")["initContainers"][0]["args"]


def test_a_created_namespace_admits_the_privileged_sidecar_and_still_warns_and_audits_restricted():
    def labels(*args: str) -> dict:
        documents = list(yaml.safe_load_all(manifests("--with-postgres", "--create-namespace", *args).stdout))
        return {k: v for k, v in by_kind(documents, "Namespace")["metadata"]["labels"].items() if k.startswith("pod-security")}

    assert labels() == {"pod-security.kubernetes.io/enforce": "privileged", "pod-security.kubernetes.io/warn": "restricted",
                        "pod-security.kubernetes.io/audit": "restricted"}
    assert labels("--docker-host", "tcp://10.0.0.9:2375") == {"pod-security.kubernetes.io/enforce": "restricted"}


def test_the_registry_and_pull_secrets_reach_the_control_plane_and_the_first_is_its_docker_config():
    pod = control_plane_pod("--image-pull-secret", "registry-login", "--image-pull-secret", "mirror-login")
    container = pod["containers"][0]
    command = container["command"] + container["args"]
    assert command[command.index("--registry") + 1] == REGISTRY
    assert [command[i + 1] for i, part in enumerate(command) if part == "--image-pull-secret"] == ["registry-login", "mirror-login"]
    # The Docker SDK reads $DOCKER_CONFIG/config.json: the pull secret's .dockerconfigjson, for pushes.
    assert {"name": "DOCKER_CONFIG", "value": "/etc/truss-cli/docker"} in container["env"]
    assert {"name": "docker-config", "mountPath": "/etc/truss-cli/docker", "readOnly": True} in container["volumeMounts"]
    volume = next(v for v in pod["volumes"] if v["name"] == "docker-config")
    assert volume["secret"]["secretName"] == "registry-login"
    assert volume["secret"]["items"] == [{"key": ".dockerconfigjson", "path": "config.json"}]
    # Without a pull secret the control plane has no Docker config of ours at all.
    plain = control_plane_pod()["containers"][0]
    assert "DOCKER_CONFIG" not in {v["name"] for v in plain["env"]}


def test_the_emitted_command_is_one_truss_server_start_accepts():
    import typer.main

    pod = control_plane_pod("--image-pull-secret", "registry-login")
    container = pod["containers"][0]
    assert container["command"] == ["truss"] and container["args"][:2] == ["server", "start"]
    start = typer.main.get_command(app).commands["server"].commands["start"]  # type: ignore[attr-defined]
    context = start.make_context("start", list(container["args"][2:]), resilient_parsing=False)
    assert context.params["registry"] == REGISTRY and context.params["image_pull_secret"] == ["registry-login"]


@pytest.mark.parametrize("args, message", [
    (["--registry", "http://registry.example.com/models"], "without a scheme"),
    (["--image-pull-secret", "Registry_Login"], "--image-pull-secret 'Registry_Login'"),
    (["--docker-host", "unix:///var/run/docker.sock"], "--docker-host"),
    (["--docker-host", "tcp://10.0.0.9:2375", "--insecure-registry"], "--insecure-registry"),
])
def test_bad_builder_options_exit_2_naming_the_option(args, message):
    result = manifests("--with-postgres", *args)
    assert result.exit_code == 2, result.output
    assert message in result.output and result.stdout == ""


def test_the_registry_is_required():
    result = runner.invoke(app, ["server", "manifests", "--namespace", "truss", "--image", IMAGE, "--with-postgres"],
                           env={"COLUMNS": "200"})
    assert result.exit_code == 2 and "--registry" in result.output and result.stdout == ""
