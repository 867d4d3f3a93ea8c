"""The client's side of patches (client/patches.py, client/dev_session.py) against a server
that answers per docs/live-reload.md over a real socket (tests/patch_spec_server.py)."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.patch_spec_server import DEPLOYMENT_ID, MODEL_ID, PatchSpecServer
from truss_cli.client.api import Api
from truss_cli.client.dev_session import WatchSession
from truss_cli.client.patches import PatchSender, SyncResult
from truss_cli.incremental_tree import IncrementalTree

MODEL = b"class Model:\n    def predict(self, request):\n    return 'hello'\n".replace(b"    return", b"        return")
CONFIG = b"model_name: hello\n"


def write_model(directory: Path, files: dict[str, bytes]) -> None:
    for path, data in files.items():
        (directory / path).parent.mkdir(parents=True, exist_ok=True)
        (directory / path).write_bytes(data)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[PatchSpecServer, Path, Api]]:
    files = {"config.yaml": CONFIG, "model/model.py": MODEL}
    directory = tmp_path / "hello"
    write_model(directory, files)
    with PatchSpecServer(files) as server, Api(server.url, "key") as api:
        yield server, directory, api


def sender_for(api: Api, directory: Path, **options: object) -> tuple[PatchSender, IncrementalTree]:
    tree = IncrementalTree(directory)
    return PatchSender(api, MODEL_ID, DEPLOYMENT_ID, tree, sleep=lambda _seconds: None, **options), tree  # type: ignore[arg-type]


def test_the_first_sync_sends_what_changed_while_nothing_watched(served: tuple[PatchSpecServer, Path, Api]) -> None:
    server, directory, api = served
    (directory / "model" / "model.py").write_bytes(MODEL.replace(b"hello", b"offline edit"))
    (directory / "data.txt").write_bytes(b"new file\n")
    sender, _tree = sender_for(api, directory)
    delta = sender.refresh()
    assert sorted(delta) == ["data.txt", "model/model.py"]
    result = sender.send(delta)
    assert result.action == "hot_swap" and result.ok
    assert result.files == ["data.txt", "model/model.py"]
    assert server.state.files()["model/model.py"] == MODEL.replace(b"hello", b"offline edit")
    assert server.state.files()["data.txt"] == b"new file\n"
    assert not sender.refresh()  # nothing left to send


def test_a_stale_base_is_rescanned_and_resent(served: tuple[PatchSpecServer, Path, Api]) -> None:
    server, directory, api = served
    sender, tree = sender_for(api, directory)
    assert not sender.refresh()
    server.foreign_change("model/other.py", b"X = 1\n")  # someone else patched
    (directory / "model" / "model.py").write_bytes(MODEL.replace(b"hello", b"mine"))
    delta = tree.update([str(directory / "model" / "model.py")])
    result = sender.send(delta)
    assert result.ok, result
    assert 409 in server.state.answers
    # The local directory is what the deployment runs now: the foreign file is gone.
    expected = {"config.yaml": CONFIG, "model/model.py": MODEL.replace(b"hello", b"mine")}
    assert server.state.files() == expected
    assert "model/other.py" in result.files


def test_a_replica_that_is_unavailable_is_asked_again(served: tuple[PatchSpecServer, Path, Api]) -> None:
    server, directory, api = served
    sender, tree = sender_for(api, directory)
    sender.refresh()
    server.state.unavailable = 2
    (directory / "model" / "model.py").write_bytes(MODEL.replace(b"hello", b"after a restart"))
    result = sender.send(tree.update([str(directory / "model" / "model.py")]))
    assert result.action == "hot_swap"
    assert server.state.answers == [503, 503, 200]
    assert len(server.state.patches) == 1  # staged once, then only synced again
    assert server.state.files()["model/model.py"] == MODEL.replace(b"hello", b"after a restart")


def test_a_syntax_error_carries_the_traceback_and_the_fix_recovers(served: tuple[PatchSpecServer, Path, Api]) -> None:
    server, directory, api = served
    sender, tree = sender_for(api, directory)
    sender.refresh()
    model = directory / "model" / "model.py"
    model.write_bytes(MODEL.replace(b"return 'hello'", b"return 'hello"))
    failed = sender.send(tree.update([str(model)]))
    assert failed.action == "failed" and not failed.ok
    assert failed.phase == "syntax"
    assert failed.traceback is not None and "SyntaxError" in failed.traceback and "model/model.py" in failed.traceback
    assert server.state.files()["model/model.py"] == MODEL  # the old code keeps serving
    model.write_bytes(MODEL.replace(b"hello", b"fixed"))
    fixed = sender.send(tree.update([str(model)]))
    assert fixed.action == "hot_swap"
    assert server.state.files()["model/model.py"] == MODEL.replace(b"hello", b"fixed")
    assert server.state.answers == [422, 200]  # the fix built on the failed (pending) patch: no 409


def test_no_hot_reload_is_sent_in_the_patch(served: tuple[PatchSpecServer, Path, Api]) -> None:
    server, directory, api = served
    sender, tree = sender_for(api, directory, hot_reload="off")
    sender.refresh()
    (directory / "model" / "model.py").write_bytes(MODEL.replace(b"hello", b"restart me"))
    sender.send(tree.update([str(directory / "model" / "model.py")]))
    assert server.state.patches[-1]["hot_reload"] == "off"


def test_a_session_syncs_each_save_and_keeps_the_deployment_awake(served: tuple[PatchSpecServer, Path, Api]) -> None:
    server, directory, api = served
    (directory / "model" / "model.py").write_bytes(MODEL.replace(b"hello", b"before the watch"))
    results: queue.Queue[SyncResult] = queue.Queue()
    session = WatchSession(api, server.deployment, directory, on_result=results.put, keep_awake_seconds=0.1)
    failures: list[BaseException] = []

    def run() -> None:
        try:
            session.run()
        except BaseException as exc:  # pragma: no cover - shown by the assertion below
            failures.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        first = results.get(timeout=60)
        assert first.files == ["model/model.py"] and first.action == "hot_swap"
        assert first.ms is None  # no save to measure from: it happened before the watch
        (directory / "model" / "helper.py").write_bytes(b"GREETING = 'hi'\n")
        second = results.get(timeout=60)
        assert second.files == ["model/helper.py"] and second.action == "hot_swap"
        assert second.ms is not None and second.ms >= 0
        assert server.state.files()["model/helper.py"] == b"GREETING = 'hi'\n"
        (directory / "model" / "helper.py").write_bytes(b"GREETING = ")
        broken = results.get(timeout=60)
        assert broken.action == "failed" and broken.traceback
        assert broken.to_dict()["traceback"] == broken.traceback
    finally:
        session.stop()
        thread.join(timeout=30)
    assert not thread.is_alive() and failures == []
    assert server.state.wakes > 0


def test_a_new_session_syncs_a_patch_left_pending_and_shows_its_failure_again(served: tuple[PatchSpecServer, Path, Api]) -> None:
    server, directory, api = served
    sender, tree = sender_for(api, directory)
    sender.refresh()
    model = directory / "model" / "model.py"
    model.write_bytes(MODEL.replace(b"return 'hello'", b"return 'hello"))
    assert sender.send(tree.update([str(model)])).action == "failed"
    # The user stopped watching there; a new session finds the failed patch pending.
    again, _tree = sender_for(api, directory)
    assert not again.refresh() and again.unsynced
    shown = again.sync_pending()
    assert shown.action == "failed" and shown.traceback is not None and "SyntaxError" in shown.traceback
    assert server.state.files()["model/model.py"] == MODEL
