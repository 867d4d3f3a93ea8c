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
from truss_cli.client.rebuilds import RebuildPhase
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


def test_an_import_error_names_the_users_file_and_leaves_other_paths_alone(served: tuple[PatchSpecServer, Path, Api]) -> None:
    _server, directory, api = served
    sender, tree = sender_for(api, directory)
    sender.refresh()
    model = directory / "model" / "model.py"
    model.write_bytes(MODEL + b"raise RuntimeError('at import')\n")
    failed = sender.send(tree.update([str(model)]))
    assert failed.phase == "import" and failed.traceback is not None
    # The replica names the file relative to its tree (C1); the user sees where it is here.
    assert f'File "{model}", line 4, in <module>' in failed.traceback
    assert 'File "/usr/lib/python3.11/importlib/__init__.py"' in failed.traceback
    assert 'File "model/model.py"' not in failed.traceback


def test_a_requirement_change_says_what_was_added_removed_and_changed(served: tuple[PatchSpecServer, Path, Api]) -> None:
    _server, directory, api = served
    config = directory / "config.yaml"
    config.write_bytes(CONFIG + b"requirements:\n  - idna\n  - attrs==23.1.0\n")
    sender, tree = sender_for(api, directory)
    assert sender.send(sender.refresh()).action == "requirements"
    config.write_bytes(CONFIG + b"requirements:\n  - six==1.16.0\n  - attrs==23.2.0\n")
    result = sender.send(tree.update([str(config)]))
    assert result.ok and result.action == "requirements", result
    assert result.requirements == {"added": ["six==1.16.0"], "removed": ["idna"], "changed": ["attrs==23.1.0 -> attrs==23.2.0"]}
    assert result.to_dict()["requirements"] == result.requirements
    assert "+six==1.16.0" in result.reason


def test_a_requirement_that_does_not_install_fails_with_uvs_output_and_the_fix_recovers(served: tuple[PatchSpecServer, Path, Api]) -> None:
    server, directory, api = served
    sender, tree = sender_for(api, directory)
    sender.refresh()
    config = directory / "config.yaml"
    config.write_bytes(CONFIG + b"requirements:\n  - does-not-exist-pkg\n")
    failed = sender.send(tree.update([str(config)]))
    assert failed.action == "failed" and failed.phase == "requirements"
    assert failed.traceback is not None and "does-not-exist-pkg was not found" in failed.traceback
    config.write_bytes(CONFIG + b"requirements:\n  - six\n")
    fixed = sender.send(tree.update([str(config)]))
    assert fixed.action == "requirements" and fixed.requirements == {"added": ["six"], "removed": [], "changed": []}
    assert server.state.answers == [422, 200]


class Session:
    """A WatchSession on its own thread; its results and rebuild phases queued as they come."""

    def __init__(self, server: PatchSpecServer, directory: Path, api: Api) -> None:
        self.results: queue.Queue[SyncResult] = queue.Queue()
        self.phases: queue.Queue[RebuildPhase] = queue.Queue()
        self._ready = threading.Event()
        self.session = WatchSession(
            api, server.deployment, directory, on_result=self.results.put, keep_awake=False,
            on_rebuild_phase=self.phases.put, rebuild_poll_seconds=0.05, on_ready=self._ready.set,
        )
        self.failures: list[BaseException] = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self.session.run()
        except BaseException as exc:  # pragma: no cover - shown by the assertion in stop()
            self.failures.append(exc)

    def __enter__(self) -> "Session":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.session.stop()
        self.thread.join(timeout=30)
        assert not self.thread.is_alive() and self.failures == []

    def ready(self) -> None:
        assert self._ready.wait(60), self.failures

    def result(self) -> SyncResult:
        return self.results.get(timeout=60)

    def phase(self) -> RebuildPhase:
        return self.phases.get(timeout=60)


def test_a_rebuild_is_followed_until_the_rebuilt_code_serves(served: tuple[PatchSpecServer, Path, Api]) -> None:
    server, directory, api = served
    config = directory / "config.yaml"
    with Session(server, directory, api) as session:
        session.ready()
        config.write_bytes(CONFIG + b"python_version: py312\n")
        asked = session.result()
        assert asked.action == "rebuild" and asked.files == ["config.yaml"]
        assert asked.reason == "config.yaml: python_version changed"
        assert asked.ms is None  # not served yet
        assert session.phase().phase == "building"
        assert server.state.files()["config.yaml"] == CONFIG  # the old tree serves meanwhile
        server.rebuild_moves_to("deploying")
        assert session.phase().phase == "deploying"
        server.rebuild_serves()
        ended = session.result()
        assert ended.action == "rebuilt" and ended.ok and ended.tree_hash == asked.tree_hash
        assert ended.files == ["config.yaml"] and ended.ms is not None and ended.ms > 0
        assert server.state.files()["config.yaml"] == CONFIG + b"python_version: py312\n"
        # Code saves after the rebuild are hot swaps again.
        (directory / "model" / "model.py").write_bytes(MODEL.replace(b"hello", b"rebuilt"))
        assert session.result().action == "hot_swap"


def test_saves_during_a_rebuild_are_deferred_and_reported_once_they_serve(served: tuple[PatchSpecServer, Path, Api]) -> None:
    server, directory, api = served
    config = directory / "config.yaml"
    model = directory / "model" / "model.py"
    with Session(server, directory, api) as session:
        session.ready()
        config.write_bytes(CONFIG + b"system_packages:\n  - ffmpeg\n")
        first = session.result()
        assert first.action == "rebuild" and session.phase().phase == "building"
        model.write_bytes(MODEL.replace(b"hello", b"during the build"))
        deferred = session.result()
        # Staged on top of the tree being rebuilt; the rebuild goes on (nothing starts over).
        assert deferred.action == "deferred" and deferred.files == ["model/model.py"] and deferred.ms is None
        assert server.state.rebuild is not None and server.state.rebuild["tree_hash"] == first.tree_hash
        assert server.state.files()["model/model.py"] == MODEL  # the old code serves meanwhile
        # The rebuilt tree serves and the control plane syncs the save at once, usually
        # before the client looks again: still reported as rebuilt, then the save as served.
        assert server.rebuild_serves() is not None
        ended = session.result()
        assert ended.action == "rebuilt" and ended.tree_hash == first.tree_hash and ended.files == ["config.yaml"]
        synced = session.result()
        assert synced.action == "synced" and synced.ok and synced.files == ["model/model.py"]
        assert synced.ms is not None and synced.ms > 0  # from the save made during the build
        assert server.state.files()["model/model.py"] == MODEL.replace(b"hello", b"during the build")
        assert len(server.state.patches) == 2 and 409 not in server.state.answers


def test_a_failed_rebuild_is_reported_even_when_a_save_made_meanwhile_serves_since(served: tuple[PatchSpecServer, Path, Api]) -> None:
    server, directory, api = served
    config = directory / "config.yaml"
    with Session(server, directory, api) as session:
        session.ready()
        config.write_bytes(CONFIG + b"system_packages:\n  - no-such-package\n")
        assert session.result().action == "rebuild"
        session.phase()
        config.write_bytes(CONFIG)  # changed their mind while it builds
        assert session.result().action == "deferred"
        answer = server.rebuild_fails("the build failed (exit code 100)", ["E: Unable to locate package no-such-package"])
        assert answer is not None and answer[1]["action"] == "hot_swap"  # the server synced the save itself
        failed = session.result()
        assert failed.action == "failed" and failed.phase == "rebuild" and failed.build_log_tail
        synced = session.result()
        assert synced.action == "synced" and synced.files == ["config.yaml"], synced
        assert server.state.files()["config.yaml"] == CONFIG


def test_a_failed_rebuild_carries_the_build_log_and_the_next_save_builds_on_it(served: tuple[PatchSpecServer, Path, Api]) -> None:
    server, directory, api = served
    config = directory / "config.yaml"
    with Session(server, directory, api) as session:
        session.ready()
        config.write_bytes(CONFIG + b"system_packages:\n  - no-such-package\n")
        assert session.result().action == "rebuild"
        session.phase()
        server.rebuild_fails("the build failed (exit code 100)", ["E: Unable to locate package no-such-package"])
        failed = session.result()
        assert failed.action == "failed" and not failed.ok and failed.phase == "rebuild"
        assert failed.error == "the build failed (exit code 100)"
        assert failed.build_log_tail == ["E: Unable to locate package no-such-package"]
        assert failed.to_dict()["build_log_tail"] == failed.build_log_tail
        assert server.state.files()["config.yaml"] == CONFIG  # the old code serves on
        config.write_bytes(CONFIG)  # the fix: back to what serves
        fixed = session.result()
        assert fixed.ok and fixed.action == "hot_swap", fixed
        assert server.state.rebuild is None and 409 not in server.state.answers


def test_a_session_started_during_a_rebuild_follows_it_without_starting_it_over(served: tuple[PatchSpecServer, Path, Api]) -> None:
    server, directory, api = served
    config = directory / "config.yaml"
    config.write_bytes(CONFIG + b"python_version: py312\n")
    sender, _tree = sender_for(api, directory)
    assert sender.send(sender.refresh()).action == "rebuild"  # then that session ended
    with Session(server, directory, api) as session:
        session.ready()
        assert session.phase().phase == "building"
        server.rebuild_serves()
        ended = session.result()
        assert ended.action == "rebuilt" and ended.ms is None  # no save of this session to time it from
    assert server.state.answers == [200]  # no second sync: the rebuild was not asked for again
