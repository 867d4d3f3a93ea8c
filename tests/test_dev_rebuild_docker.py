"""The zero-downtime development rebuild (contract C2) on the docker runtime: a change every
runtime rebuilds (`resources`) builds a new image while the old container serves, starts a
new container, routes to it once it is ready and stops the old one; a client predicting in a
loop meanwhile sees no failure, then the new code."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest

from conftest import write_model_dir
from controlplane_support import running_controlplane
from docker_support import engine
from test_controlplane_dev_rebuild import wait_for_state
from test_controlplane_patches import Watcher, ok, predict, push_development, send

pytestmark = pytest.mark.docker

MODEL = """
class Model:
    def predict(self, request):
        return {{"marker": {marker!r}}}
"""
CONFIG = "model_name: dockerdev\npython_version: py311\n"


def test_a_development_rebuild_on_docker_keeps_the_old_container_serving(tmp_path: Path) -> None:
    client = engine()
    with running_controlplane(tmp_path / "cp", runtime="docker") as cp:
        root = write_model_dir(tmp_path / "dockerdev", MODEL.format(marker="a"), CONFIG)
        deployment = push_development(cp, root, "dockerdev")
        watcher = Watcher(root)
        try:
            def containers() -> list[dict]:
                return client.containers(filters={"label": f"truss.deployment-id={deployment['id']}"})

            [old] = containers()
            failures: list[str] = []
            markers: list[str] = []
            stop = threading.Event()

            def loop() -> None:
                headers = {"Authorization": f"Api-Key {cp.admin_key}"}
                with httpx.Client(base_url=cp.url, headers=headers, timeout=120) as http:
                    while not stop.is_set():
                        response = http.post(f"/model-{deployment['model_id']}/development/predict", json={})
                        if response.status_code != 200:
                            failures.append(f"{response.status_code} {response.text[:200]}")
                        else:
                            markers.append(response.json()["marker"])

            thread = threading.Thread(target=loop)
            thread.start()
            try:
                _, envelope = watcher.edit("model/model.py", MODEL.format(marker="b"))
                ok(send(cp, deployment, envelope, sync=False), 201)
                patch, envelope = watcher.edit("config.yaml", CONFIG + "resources:\n  cpu: 500m\n")
                assert ok(send(cp, deployment, envelope))["action"] == "rebuild"
                done = wait_for_state(cp, deployment, lambda s: s["rebuild"] is None or s["rebuild"]["phase"] == "failed",
                                      timeout=900)
                assert done["rebuild"] is None and done["running_patch_point"] == {"hash": patch.next_hash}, done
                count = len(markers)
                deadline = time.monotonic() + 60
                while len(markers) < count + 5:
                    assert time.monotonic() < deadline
                    time.sleep(0.05)
            finally:
                stop.set()
                thread.join()
            assert failures == []
            assert markers[0] == "a" and markers[-1] == "b"
            deadline = time.monotonic() + 60
            while [c["Id"] for c in containers()] in ([], [old["Id"]]) or len(containers()) != 1:
                assert time.monotonic() < deadline, containers()  # the old one drains, then stops
                time.sleep(0.2)
            assert predict(cp.client, deployment["model_id"])["marker"] == "b"
        finally:
            cp.client.delete(f"/v1/models/{deployment['model_id']}")
