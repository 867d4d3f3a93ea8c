"""Following a deployment's logs from the moment it is created, as `truss push --tail` does."""

from __future__ import annotations

import json
import os
import signal
import threading
from pathlib import Path

from conftest import write_model_dir
from controlplane_checks import eventually, replica_sessions
from controlplane_support import running_controlplane
from test_controlplane_failures import HELD_MODEL, HeldWheelServer

FINAL = ("ACTIVE", "BUILD_FAILED", "DEPLOY_FAILED", "UNHEALTHY")

HELLO = """
class Model:
    def predict(self, request):
        return {"hello": request}
"""


def test_following_a_build_that_has_not_started_waits_for_it_and_ends_with_it(tmp_path: Path) -> None:
    # Both build workers (the default two) are held downloading a wheel, so the deployment
    # followed below stays queued, with no build log, until the test lets them go.
    blockers = [HeldWheelServer(), HeldWheelServer()]
    hello_dir = write_model_dir(tmp_path / "hello", HELLO, "model_name: hello\n")
    try:
        with running_controlplane(tmp_path / "cp") as cp:
            for index, held in enumerate(blockers):
                blocker_dir = write_model_dir(tmp_path / f"held{index}", HELD_MODEL,
                                              f"model_name: held{index}\nrequirements:\n  - truss-held-pkg @ {held.url}\n")
                cp.push(blocker_dir)
                held.wait_for_requests(1)
            created = cp.push(hello_dir)
            model_id, deployment_id = created["model_id"], created["id"]
            logs = f"/v1/models/{model_id}/deployments/{deployment_id}/logs"
            with cp.client.stream("GET", logs, params={"follow": "true", "kind": "build"}, timeout=600) as stream:
                assert stream.status_code == 200
                # Only now can the queued build start: its log is written after the stream
                # began (the blockers still have to install their wheel and finish first).
                for held in blockers:
                    held.released.set()
                followed = [json.loads(line) for line in stream.iter_lines() if line]
            # The stream ended by itself, and only once the deployment was final.
            deployment = cp.client.get(f"/v1/models/{model_id}/deployments/{deployment_id}").json()
            assert deployment["status"] in FINAL
            assert deployment["status"] == "ACTIVE", deployment

            texts = [line["text"] for line in followed]
            assert any(text.startswith("preparing an environment") for text in texts), texts
            # The build's last line, then at most the note that it took the empty production
            # (written as it became ACTIVE, so the stream may end before or after it).
            ready = [i for i, text in enumerate(texts) if text.startswith("environment ready")]
            assert ready, texts
            assert all(text.startswith("serves production") for text in texts[ready[-1] + 1:]), texts
            assert {line["source"] for line in followed} == {"build"}
            # Nothing was missed: the followed lines are the whole build log.
            whole = cp.client.get(logs, params={"kind": "build"}).text.splitlines()
            assert [json.loads(line)["text"] for line in whole if line] == texts
    finally:
        for held in blockers:
            held.close()


LOUD = """
import os


class Model:
    def load(self):
        print(f"loaded in {os.getpid()}", flush=True)

    def predict(self, request):
        return {"pid": os.getpid()}
"""


def test_following_replica_logs_goes_on_with_the_replica_that_replaces_a_dead_one(tmp_path: Path) -> None:
    model_dir = write_model_dir(tmp_path / "loud", LOUD, "model_name: loud\n")
    with running_controlplane(tmp_path / "cp") as cp:
        created = cp.push(model_dir)
        model_id, deployment_id = created["model_id"], created["id"]
        cp.wait_for_status(model_id, deployment_id, "ACTIVE")
        logs = f"/v1/models/{model_id}/deployments/{deployment_id}/logs"
        followed: list[dict] = []

        def follow() -> None:
            with cp.client.stream("GET", logs, params={"follow": "true", "kind": "all"}, timeout=600) as stream:
                for line in stream.iter_lines():
                    if line:
                        followed.append(json.loads(line))
                        if len({item["source"] for item in followed if "loaded in" in item["text"]}) == 2:
                            return

        reader = threading.Thread(target=follow, daemon=True)
        reader.start()
        eventually(lambda: any("loaded in" in item["text"] for item in followed))
        first = replica_sessions(cp, deployment_id)
        os.killpg(first[0], signal.SIGKILL)
        # The stream opened before the loss shows the replacement loading, with its own source.
        reader.join(timeout=300)
        assert not reader.is_alive(), [item["text"] for item in followed]
        sources = [item["source"] for item in followed if "loaded in" in item["text"]]
        assert len(set(sources)) == 2 and all(source.startswith("replica:") for source in sources), sources
