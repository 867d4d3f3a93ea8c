"""`--image-pull-secret` on `truss server start` / `serve`: checked before anything starts,
refused with another runtime, carried on the control plane's command line, and named on every
model pod the runtime then creates (against the fake API: the runtime is built as `serve`
builds it, and its Deployment is read back from the API server)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from docker_support import engine
from kube_fake_api import FakeKubernetesApi
from kube_fake_cluster import write_kubeconfig
from truss_cli.client.local_server import serve_command
from truss_cli.controlplane.runtimes.base import Artifact, ReplicaSpec
from truss_cli.controlplane.runtimes.kubernetes.selection import KubernetesOptions, kubernetes_runtime
from truss_cli.settings import Settings

IMAGE = "127.0.0.1:5000/models/truss-hello@sha256:" + "ab" * 32


@pytest.fixture
def fake() -> Iterator[FakeKubernetesApi]:
    server = FakeKubernetesApi(namespaces=("truss",))
    yield server
    server.close()


@pytest.mark.docker
def test_pods_pull_with_the_secrets_the_control_plane_was_given(fake: FakeKubernetesApi, tmp_path: Path) -> None:
    engine()  # the runtime builds with it: it connects at start
    settings = Settings.from_environment(os.environ, tmp_path)
    options = KubernetesOptions("truss", write_kubeconfig(tmp_path / "kubeconfig", fake.url), "127.0.0.1:5000/models",
                                ("registry-login", "mirror-login"))
    runtime, reason = kubernetes_runtime(settings, options)
    try:
        assert "pods pull with registry-login, mirror-login" in reason
        model_dir = tmp_path / "model"
        model_dir.mkdir()
        (model_dir / "config.yaml").write_text("model_name: hello\n")
        artifact = Artifact("kubernetes", "d7p3z1wb", IMAGE, {
            "image": IMAGE, "model_dir": str(model_dir), "model_id": "m4k2x9qa", "model_name": "hello",
            "deployment_name": "deployment-1"})
        runtime.start(ReplicaSpec("d7p3z1wb", artifact))
        pod = fake.objects[("deployments", "truss", "truss-deployment-d7p3z1wb")]["spec"]["template"]["spec"]
        assert pod["imagePullSecrets"] == [{"name": "registry-login"}, {"name": "mirror-login"}]
    finally:
        runtime.api.close()


def test_the_secrets_are_on_the_control_planes_command_line(tmp_path: Path) -> None:
    command = serve_command(tmp_path, "127.0.0.1", 0, "kubernetes",
                            kubernetes=KubernetesOptions("truss", None, "127.0.0.1:5000/m", ("registry-login", "mirror-login")))
    assert command[command.index("--image-pull-secret"):] == ["--image-pull-secret", "registry-login",
                                                             "--image-pull-secret", "mirror-login"]


def test_bad_or_stray_pull_secrets_exit_2_before_anything_starts(tmp_path: Path) -> None:
    environment = {**os.environ, "HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path / "data")}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, timeout=60, env=environment)

    stray = run("truss_cli", "server", "start", "--data-dir", str(tmp_path / "cp"), "--runtime", "process",
                "--image-pull-secret", "registry-login")
    assert stray.returncode == 2 and "--image-pull-secret: only with --runtime kubernetes" in stray.stderr
    bad = run("truss_cli.controlplane", "serve", "--data-dir", str(tmp_path / "cp"), "--port", "0", "--runtime", "kubernetes",
              "--namespace", "truss", "--registry", "127.0.0.1:5000/m", "--image-pull-secret", "Registry_Login")
    assert bad.returncode == 2 and "--image-pull-secret 'Registry_Login'" in bad.stderr
    assert "kubectl -n NS create secret docker-registry" in bad.stderr
    assert not (tmp_path / "cp" / "controlplane.json").exists()
