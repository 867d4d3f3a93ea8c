"""A development replica booted on an empty tree (a Kubernetes development pod: its emptyDir
tree is delivered by the control plane once the pod answers, runtimes/kubernetes/development.py)
is not ready until a tree arrives: readiness and predict answer 503 saying it waits for its
tree, so no kubelet marks the pod Ready (and no EndpointSlice routes to it) before it serves
the model. The first patch brings the tree; then it is ready."""

from __future__ import annotations

from pathlib import Path

import httpx

from conftest import write_model_dir
from dev_replica_support import DevReplica
from test_server_harness import write_replica_config
from truss_cli.server.control.apply import scan_tree
from truss_cli.server.protocol import READINESS_PATH, STATUS_PATH
from truss_cli.sync.manifest import Manifest

MODEL = """
class Model:
    def predict(self, model_input):
        return {"served": "the delivered tree"}
"""
WAITING = "waiting for its tree from the control plane"


def test_a_replica_on_the_empty_tree_is_not_ready_until_its_tree_is_delivered(tmp_path: Path) -> None:
    source = write_model_dir(tmp_path / "source", MODEL, "model_name: dev\n")
    image_config = write_replica_config(source, tmp_path / "image-replica.json")  # what the image carries
    tree = tmp_path / "tree"
    tree.mkdir()
    with DevReplica(tree, replica_config=image_config) as replica:
        readiness = httpx.get(replica.url + READINESS_PATH, timeout=30)
        assert readiness.status_code == 503, readiness.text
        assert WAITING in readiness.json()["error"]
        predict = replica.predict()
        assert predict.status_code == 503 and WAITING in predict.json()["error"], predict.text
        status = httpx.get(replica.url + STATUS_PATH, timeout=30).json()
        # What the Kubernetes runtime reads to deliver the tree: the empty tree, the control port.
        assert status["tree_hash"] == Manifest().tree_hash() and status["control_port"] is not None
        assert status["phase"] == "loading" and WAITING in status["summary"], status
        assert replica.state()["phase"] == "loading"

        files = {path: (source / path).read_text() for path in scan_tree(source)}
        delivered = replica.patch(files)
        assert delivered.status_code == 200, delivered.text
        assert httpx.get(replica.url + READINESS_PATH, timeout=30).status_code == 200
        answer = replica.predict()
        assert answer.status_code == 200 and answer.json() == {"served": "the delivered tree"}, answer.text
        assert replica.state()["phase"] == "ready"
