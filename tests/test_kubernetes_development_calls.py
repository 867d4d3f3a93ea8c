"""A development deployment's control token on the Kubernetes runtime, against the fake API
alone (no containers; tests/test_kubernetes_development.py runs the pods for real): one
random token per deployment, in a Secret the pods mount and a 0600 copy the control plane
keeps; the same token on every start (the template never changes), taken back from the Secret
when the copy is lost; gone with the deployment; none for a custom server's plain pods."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path
from typing import Iterator

import pytest

from kube_fake_api import FakeKubernetesApi
from kube_fake_cluster import write_kubeconfig
from truss_cli.controlplane.runtimes.base import CONTROL_TOKEN_FILE, Artifact, ReplicaSpec
from truss_cli.controlplane.runtimes.kubernetes.api import KubernetesApi
from truss_cli.controlplane.runtimes.kubernetes.runtime import KubernetesRuntime
from truss_cli.image.registry import Registry

IMAGE = "127.0.0.1:5000/models/truss-hello@sha256:" + "ab" * 32
SECRET = ("secrets", "truss", "truss-control-d7p3z1wb")
DEPLOYMENT = ("deployments", "truss", "truss-deployment-d7p3z1wb")


@pytest.fixture
def fake() -> Iterator[FakeKubernetesApi]:
    server = FakeKubernetesApi(namespaces=("truss",))
    yield server
    server.close()


@pytest.fixture
def runtime(fake: FakeKubernetesApi, tmp_path: Path) -> Iterator[KubernetesRuntime]:
    with KubernetesApi.from_kubeconfig(write_kubeconfig(tmp_path / "kubeconfig", fake.url), "truss") as api:
        yield KubernetesRuntime(api, Registry("127.0.0.1:5000", "models"), images=None, data_dir=tmp_path / "cp")


def development_spec(tmp_path: Path, config: str = "model_name: hello\n") -> ReplicaSpec:
    model_dir = tmp_path / "model"
    model_dir.mkdir(exist_ok=True)
    (model_dir / "config.yaml").write_text(config)
    artifact = Artifact("kubernetes", "d7p3z1wb", IMAGE, {
        "image": IMAGE, "model_dir": str(model_dir), "model_id": "m4k2x9qa", "model_name": "hello",
        "deployment_name": "development"})
    return ReplicaSpec("d7p3z1wb", artifact, development=True, tree_dir=str(model_dir), tree_hash="0" * 64)


def secret_token(fake: FakeKubernetesApi) -> str:
    with fake.lock:
        return base64.b64decode(fake.objects[SECRET]["data"]["control_token"]).decode()


def test_one_token_per_deployment_in_its_secret_and_a_0600_copy_the_same_on_every_start(
    fake: FakeKubernetesApi, runtime: KubernetesRuntime, tmp_path: Path
) -> None:
    first = runtime.start(development_spec(tmp_path))
    token_file = Path(first.data[CONTROL_TOKEN_FILE])
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    token = token_file.read_text()
    assert len(token) >= 32 and secret_token(fake) == token
    with fake.lock:
        template = json.dumps(fake.objects[DEPLOYMENT]["spec"]["template"])
    assert token not in template and "truss-control-d7p3z1wb" in template

    # A second replica: the same token, the same template (no pod would be rolled by it).
    second = runtime.start(development_spec(tmp_path))
    assert second.data[CONTROL_TOKEN_FILE] == str(token_file) and token_file.read_text() == token
    with fake.lock:
        assert json.dumps(fake.objects[DEPLOYMENT]["spec"]["template"]) == template

    # The control plane lost its copy: it takes the token back from the Secret, so pods keep theirs.
    token_file.unlink()
    runtime.start(development_spec(tmp_path))
    assert token_file.read_text() == token and secret_token(fake) == token


def test_the_token_goes_with_the_deployment(fake: FakeKubernetesApi, runtime: KubernetesRuntime, tmp_path: Path) -> None:
    spec = development_spec(tmp_path)
    token_file = Path(runtime.start(spec).data[CONTROL_TOKEN_FILE])
    runtime.remove_artifact(spec.artifact)
    assert SECRET not in fake.objects and not token_file.exists()


def test_a_custom_server_runs_plain_pods_without_a_token(fake: FakeKubernetesApi, runtime: KubernetesRuntime,
                                                          tmp_path: Path) -> None:
    spec = development_spec(tmp_path, "model_name: custom\ndocker_server:\n  start_command: python server.py\n"
                                      "  server_port: 9000\n  predict_endpoint: /predict\n"
                                      "  readiness_endpoint: /ready\n  liveness_endpoint: /live\n")
    handle = runtime.start(spec)
    assert CONTROL_TOKEN_FILE not in handle.data and SECRET not in fake.objects
    with fake.lock:
        assert "command" not in fake.objects[DEPLOYMENT]["spec"]["template"]["spec"]["containers"][0]
