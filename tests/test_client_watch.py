"""The watch loop over real file-system events (watchfiles): save a file, get its Delta.

The loop runs on a thread and hands batches over a queue; each test waits (generously, with
no timing assertion) for the batch it expects."""

from __future__ import annotations

import os
import queue
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from truss_cli.client.watch import Batch, watch_tree
from truss_cli.incremental_tree import IncrementalTree
from truss_cli.sync.manifest import Manifest
from truss_cli.sync.patch import Delta
from truss_cli.tree import TreeHasher, list_files

PATIENCE_S = 20.0  # a loaded CI machine can be slow to deliver events; never a timing assertion


class Watcher:
    def __init__(self, tree: IncrementalTree) -> None:
        self.tree = tree
        self.batches: queue.Queue[Batch | BaseException] = queue.Queue()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.base = tree.manifest
        self.thread.start()
        # The first idle batch comes once the watcher is set up: only then are edits seen.
        assert not self.next(lambda batch: True).delta

    def _run(self) -> None:
        try:
            for batch in watch_tree(self.tree, stop_event=self.stop, yield_idle=True):
                self.batches.put(batch)
        except BaseException as exc:  # handed to the test
            self.batches.put(exc)

    def next(self, wanted) -> Batch:  # type: ignore[no-untyped-def]
        while True:
            item = self.batches.get(timeout=PATIENCE_S)
            if isinstance(item, BaseException):
                raise item
            if wanted(item):
                return item

    def changes_until(self, expected: Manifest) -> tuple[Delta, list[Batch]]:
        """Every batch until the tree equals `expected`, and their deltas composed."""
        seen: list[Batch] = []
        combined = Delta()
        while self.tree.manifest != expected or not seen:
            batch = self.next(lambda batch: bool(batch.delta) or batch.error is not None)
            assert batch.error is None, batch.error
            seen.append(batch)
            combined = combined.then(batch.delta, self.base)
        self.base = self.tree.manifest
        return combined, seen

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=PATIENCE_S)
        assert not self.thread.is_alive()


def listed(root: Path) -> Manifest:
    return TreeHasher().manifest(list_files(root))


@pytest.fixture
def model(tmp_path: Path) -> Path:
    root = tmp_path / "model"
    for relative, text in {
        "config.yaml": "model_name: m\n",
        "model/__init__.py": "",
        "model/model.py": "class Model:\n    pass\n",
        "model/sub/helper.py": "X = 1\n",
        "model/sub/more.py": "Y = 1\n",
    }.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(text)
    return root


@pytest.fixture
def watcher(model: Path) -> Iterator[Watcher]:
    running = Watcher(IncrementalTree(model))
    yield running
    running.close()


def test_a_saved_file_arrives_as_a_delta_with_the_new_tree_hash(model: Path, watcher: Watcher) -> None:
    before = watcher.tree.manifest
    (model / "model" / "model.py").write_text("class Model:\n    x = 1\n")
    delta, batches = watcher.changes_until(listed(model))
    assert list(delta) == ["model/model.py"]
    assert batches[-1].tree_hash == listed(model).tree_hash() == before.with_changes(delta).tree_hash()
    assert all(batch.paths >= 1 and not batch.rescanned for batch in batches)


def test_an_atomic_save_is_one_put_and_the_temporary_file_never_appears(model: Path, watcher: Watcher) -> None:
    temporary = model / "model" / ".model.py.tmp-8812"
    temporary.write_text("class Model:\n    y = 2\n")
    os.replace(temporary, model / "model" / "model.py")
    delta, batches = watcher.changes_until(listed(model))
    assert list(delta) == ["model/model.py"]
    assert not [batch for batch in batches if any("tmp" in path for path in batch.delta)]


def test_deleting_a_directory_gives_deletes_for_its_files(model: Path, watcher: Watcher) -> None:
    shutil.rmtree(model / "model" / "sub")
    delta, _ = watcher.changes_until(listed(model))
    assert delta == Delta({"model/sub/helper.py": None, "model/sub/more.py": None})


def test_a_new_directory_with_files_arrives_whole(model: Path, watcher: Watcher, tmp_path: Path) -> None:
    staging = tmp_path / "staging" / "pkg"
    (staging / "inner").mkdir(parents=True)
    (staging / "a.py").write_text("A")
    (staging / "inner" / "b.py").write_text("B")
    os.rename(staging, model / "model" / "pkg")
    delta, _ = watcher.changes_until(listed(model))
    assert sorted(delta) == ["model/pkg/a.py", "model/pkg/inner/b.py"]


def test_ignored_files_never_appear(model: Path, watcher: Watcher) -> None:
    (model / "model" / "__pycache__").mkdir()
    (model / "model" / "__pycache__" / "model.cpython-311.pyc").write_bytes(b"\x00junk")
    (model / "model" / ".model.py.swp").write_text("vim")
    (model / "notes.txt~").write_text("backup")
    (model / "config.yaml").write_text("model_name: m2\n")  # the one real change, written last
    delta, batches = watcher.changes_until(listed(model))
    assert list(delta) == ["config.yaml"]
    assert [path for batch in batches for path in batch.delta] == ["config.yaml"]


def test_a_nested_truss_ignore_change_takes_effect_while_watching(model: Path, watcher: Watcher) -> None:
    (model / "model" / ".truss_ignore").write_text("sub/\n")
    delta, _ = watcher.changes_until(listed(model))
    assert sorted(delta.deletes()) == ["model/sub/helper.py", "model/sub/more.py"]
    assert list(delta.puts()) == ["model/.truss_ignore"]


def test_a_binary_file_and_a_mode_change_arrive(model: Path, watcher: Watcher) -> None:
    (model / "weights.bin").write_bytes(bytes(range(256)) * 64)
    os.chmod(model / "model" / "model.py", 0o755)
    delta, _ = watcher.changes_until(listed(model))
    assert sorted(delta) == ["model/model.py", "weights.bin"]
    assert delta["model/model.py"].mode == 0o100755  # type: ignore[union-attr]


def test_the_stop_event_ends_the_loop(model: Path) -> None:
    running = Watcher(IncrementalTree(model))
    running.close()  # joins the thread: the generator returned


def test_a_watcher_failure_restarts_it_rescans_and_the_watch_goes_on(model: Path, watcher: Watcher) -> None:
    # watchfiles fails on a file name that is not UTF-8 (it cannot report it); the loop starts
    # a new watcher and rescans, and the rescan names the file a patch could not carry.
    odd = os.path.join(os.fsencode(model / "model"), b"caf\xe9.py")
    with open(odd, "wb") as handle:
        handle.write(b"x")
    failed = watcher.next(lambda batch: batch.error is not None)
    assert failed.rescanned and "a file name a patch cannot carry" in str(failed.error)
    os.unlink(odd)
    (model / "model" / "model.py").write_text("class Model:\n    fixed = True\n")
    delta, _ = watcher.changes_until(listed(model))
    assert list(delta) == ["model/model.py"]
