"""IncrementalTree: the manifest kept current from change events, at the cost of the change.

The events are passed by hand here (the paths a watcher reports), so each test says exactly
which events it relies on; tests/test_client_watch.py drives the same tree from real ones.
After every update the tree must equal what a full listing gives (`list_files`)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from truss_cli.errors import UsageError
from truss_cli.incremental_tree import IncrementalTree, external_prefix
from truss_cli.sync.manifest import EXECUTABLE_MODE, FILE_MODE, LINK_MODE, Manifest
from truss_cli.sync.patch import Delta, Patch
from truss_cli.tree import TreeHasher, list_files, sha256_file

OLD = 1_600_000_000  # an mtime long past: digests of such files are remembered


def write(root: Path, files: dict[str, str | bytes], old: bool = True) -> Path:
    for relative, content in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
        if old:
            os.utime(path, (OLD, OLD))
    return root


def listed(root: Path) -> Manifest:
    return TreeHasher().manifest(list_files(root))


class CountingDigest:
    def __init__(self) -> None:
        self.read: list[str] = []

    def __call__(self, path: Path) -> bytes:
        self.read.append(path.name)
        return sha256_file(path)


@pytest.fixture
def model(tmp_path: Path) -> Path:
    files: dict[str, str | bytes] = {
        "config.yaml": "model_name: m\n",
        "model/__init__.py": "",
        "model/model.py": "class Model:\n    pass\n",
        "model/sub/helper.py": "X = 1\n",
        "model/sub/deeper/more.py": "Y = 2\n",
        "data/weights.bin": bytes(range(256)) * 4,
    }
    files.update({f"model/assets/a{index:03}.txt": f"asset {index}\n" for index in range(50)})
    return write(tmp_path / "model", files)


def test_the_start_manifest_is_the_full_listing(model: Path) -> None:
    tree = IncrementalTree(model)
    assert tree.manifest == listed(model)
    assert tree.tree_hash() == listed(model).tree_hash()


def test_one_edit_reads_one_file_and_gives_one_put(model: Path) -> None:
    reads = CountingDigest()
    tree = IncrementalTree(model, digest_file=reads)
    before = tree.manifest
    reads.read.clear()
    (model / "model" / "model.py").write_text("class Model:\n    x = 1\n")
    delta = tree.update([model / "model" / "model.py"])
    assert list(delta) == ["model/model.py"] and delta["model/model.py"] is not None
    assert reads.read == ["model.py"]
    assert tree.manifest == listed(model)
    # The delta is what a patch carries: applied to the old tree it gives the new hash.
    assert Patch.between(before, delta).next_hash == listed(model).tree_hash()


def test_an_event_for_an_unchanged_file_reads_nothing_and_changes_nothing(model: Path) -> None:
    reads = CountingDigest()
    tree = IncrementalTree(model, digest_file=reads)
    reads.read.clear()
    assert tree.update([model / "config.yaml", model / "model" / "sub"]) == Delta()
    assert reads.read == []


def test_an_editor_atomic_save_gives_one_put(model: Path) -> None:
    tree = IncrementalTree(model)
    target = model / "model" / "model.py"
    temporary = model / "model" / ".model.py.tmp1234"
    temporary.write_text("class Model:\n    y = 2\n")
    os.replace(temporary, target)
    delta = tree.update([temporary, target, temporary])
    assert list(delta) == ["model/model.py"]
    assert tree.manifest == listed(model)


def test_a_vim_style_save_with_probe_and_backup_files_gives_one_put(model: Path) -> None:
    tree = IncrementalTree(model)
    base = tree.manifest
    target = model / "model" / "model.py"
    probe = model / "model" / "4913"
    probe.write_text("")
    probe.unlink()
    backup = model / "model" / "model.py~"
    os.rename(target, backup)
    target.write_text("class Model:\n    z = 3\n")
    swap = model / "model" / ".model.py.swp"
    swap.write_text("vim state")
    events = [probe, probe, target, backup, target, swap]
    delta = tree.update(events)
    backup.unlink()
    delta = delta.then(tree.update([backup]), base)
    assert list(delta) == ["model/model.py"]
    assert tree.manifest == listed(model)


def test_deleting_a_directory_deletes_its_files(model: Path) -> None:
    tree = IncrementalTree(model)
    shutil.rmtree(model / "model" / "sub")
    delta = tree.update([model / "model" / "sub"])  # inotify may report only the directory
    assert delta == Delta({"model/sub/helper.py": None, "model/sub/deeper/more.py": None})
    assert tree.manifest == listed(model)


def test_a_directory_moved_in_brings_all_its_files(model: Path, tmp_path: Path) -> None:
    tree = IncrementalTree(model)
    outside = write(tmp_path / "elsewhere", {"pkg/a.py": "A", "pkg/inner/b.py": "B", "pkg/__pycache__/a.pyc": "x"})
    os.rename(outside / "pkg", model / "model" / "pkg")
    delta = tree.update([model / "model" / "pkg"])
    assert sorted(delta) == ["model/pkg/a.py", "model/pkg/inner/b.py"]
    assert tree.manifest == listed(model)


def test_a_parent_directory_event_scans_that_directory_only(model: Path) -> None:
    tree = IncrementalTree(model)
    # Written without an event for it, in a subdirectory the tree already knows...
    write(model, {"model/sub/unseen.py": "", "model/new.py": ""})
    # ...so an event for the parent picks up its own new entry but does not walk `sub/`.
    assert sorted(tree.update([model / "model"])) == ["model/new.py"]
    # The self-healing walk finds the rest.
    assert sorted(tree.full_rescan()) == ["model/sub/unseen.py"]
    assert tree.manifest == listed(model)


def test_ignored_files_never_appear(model: Path) -> None:
    write(model, {"model/.truss_ignore": "*.ckpt\n/scratch/\n"})
    tree = IncrementalTree(model)
    junk = write(
        model,
        {
            "model/__pycache__/model.cpython-311.pyc": "x",
            "model/run.ckpt": "x",
            "model/scratch/notes.py": "x",
            ".git/index": "x",
            "venv2/pyvenv.cfg": "",
            "venv2/lib/site.py": "x",
            "model/.model.py.swp": "x",
        },
    )
    events = [
        junk / "model/__pycache__/model.cpython-311.pyc", junk / "model/__pycache__", junk / "model/run.ckpt",
        junk / "model/scratch", junk / "model/scratch/notes.py", junk / ".git/index", junk / "venv2",
        junk / "venv2/lib/site.py", junk / "model/.model.py.swp", junk / "model",
    ]
    # The watcher's filter drops what is ignored whatever it is; names that only a directory
    # rule matches (or a virtual environment's) pass, and the update judges them.
    assert [event for event in events if not tree.wants(event)] == [
        junk / "model/__pycache__/model.cpython-311.pyc", junk / "model/run.ckpt", junk / "model/scratch/notes.py",
        junk / ".git/index", junk / "model/.model.py.swp",
    ]
    assert tree.update(events) == Delta()
    assert tree.manifest == listed(model)


def test_a_changed_truss_ignore_rescans_its_subtree(model: Path) -> None:
    tree = IncrementalTree(model)
    ignore_file = model / "model" / ".truss_ignore"
    ignore_file.write_text("assets/\n")
    delta = tree.update([ignore_file])
    assert delta["model/.truss_ignore"] is not None
    assert sorted(path for path in delta if delta[path] is None) == [f"model/assets/a{i:03}.txt" for i in range(50)]
    assert tree.manifest == listed(model)
    ignore_file.unlink()
    delta = tree.update([ignore_file])
    assert delta["model/.truss_ignore"] is None and len(delta.puts()) == 50
    assert tree.manifest == listed(model)


def test_binary_files_and_mode_changes_are_puts(model: Path) -> None:
    tree = IncrementalTree(model)
    os.chmod(model / "config.yaml", 0o755)
    (model / "data" / "more.bin").write_bytes(b"\x00\xff" * 1000)
    (model / "model" / "alias").symlink_to("sub")
    delta = tree.update([model / "config.yaml", model / "data" / "more.bin", model / "model" / "alias"])
    puts = delta.puts()
    assert puts["config.yaml"].mode == EXECUTABLE_MODE
    assert puts["data/more.bin"].mode == FILE_MODE
    assert puts["model/alias"].mode == LINK_MODE
    assert tree.manifest == listed(model)


def test_a_file_replaced_by_a_directory_and_back(model: Path) -> None:
    tree = IncrementalTree(model)
    helper = model / "model" / "sub" / "helper.py"
    helper.unlink()
    write(model, {"model/sub/helper.py/inside.py": "x"}, old=False)
    assert tree.update([helper]) == Delta({"model/sub/helper.py": None, "model/sub/helper.py/inside.py": tree.manifest["model/sub/helper.py/inside.py"]})
    shutil.rmtree(helper)
    helper.write_text("back")
    delta = tree.update([helper])
    assert sorted(delta) == ["model/sub/helper.py", "model/sub/helper.py/inside.py"]
    assert tree.manifest == listed(model)


def test_external_package_dirs_enter_under_their_reserved_prefix(model: Path, tmp_path: Path) -> None:
    shared = write(tmp_path / "shared", {"shared_lib/__init__.py": "", "shared_lib/util.py": "U = 1\n"})
    tree = IncrementalTree(model, [shared])
    prefix = external_prefix(0)
    assert prefix == "__external__/0/"
    assert {path for path in tree.manifest if path.startswith(prefix)} == {
        prefix + "shared_lib/__init__.py", prefix + "shared_lib/util.py",
    }
    assert tree.roots == [model.resolve(), shared.resolve()]
    (shared / "shared_lib" / "util.py").write_text("U = 2\n")
    assert list(tree.update([shared / "shared_lib" / "util.py"])) == [prefix + "shared_lib/util.py"]


def test_a_model_directory_with_its_own_external_directory_is_refused_while_watching_externals(model: Path, tmp_path: Path) -> None:
    write(model, {"__external__/0/x.py": ""})
    shared = write(tmp_path / "shared", {"lib.py": ""})
    with pytest.raises(UsageError, match="__external__/ is reserved"):
        IncrementalTree(model, [shared])
    assert "__external__/0/x.py" in IncrementalTree(model).manifest  # no externals: an ordinary file


def test_a_link_to_outside_is_refused_and_the_tree_heals_once_it_is_gone(model: Path, tmp_path: Path) -> None:
    tree = IncrementalTree(model)
    link = model / "model" / "home"
    link.symlink_to(tmp_path)
    (model / "model" / "model.py").write_text("edited while the link was there")
    with pytest.raises(UsageError, match="outside"):
        tree.update([link, model / "model" / "model.py"])
    link.unlink()
    delta = tree.update([link])
    assert list(delta) == ["model/model.py"]  # the edit in the failed batch is not lost
    assert tree.manifest == listed(model)


def test_a_missing_root_is_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="nothing to watch"):
        IncrementalTree(tmp_path / "absent")


def test_a_name_a_patch_cannot_carry_is_refused_by_name_and_the_watch_heals(model: Path) -> None:
    tree = IncrementalTree(model)
    odd = model / "model" / "win\\style.py"
    odd.write_text("")
    with pytest.raises(UsageError, match=r"win\\style.py: a file name a patch cannot carry") as raised:
        tree.update([odd])
    assert raised.value.hint == "rename it, or list it in .truss_ignore"
    (model / ".truss_ignore").write_text("*\\\\*\n")  # gitignore: "\\" matches a backslash
    delta = tree.update([model / ".truss_ignore"])
    assert list(delta) == [".truss_ignore"]
    assert tree.manifest == listed(model)


def test_a_directory_moved_in_with_its_own_truss_ignore_follows_it(model: Path, tmp_path: Path) -> None:
    tree = IncrementalTree(model)
    # The watcher's filter asks about a path in "model/pkg" before it exists...
    assert tree.wants(model / "model" / "pkg" / "early.py")
    outside = write(tmp_path / "elsewhere", {"pkg/.truss_ignore": "*.bin\n", "pkg/a.py": "A", "pkg/big.bin": "B"})
    os.rename(outside / "pkg", model / "model" / "pkg")
    # ...then the directory arrives whole, with a rule file no event named.
    assert sorted(tree.update([model / "model" / "pkg"])) == ["model/pkg/.truss_ignore", "model/pkg/a.py"]
    assert tree.manifest == listed(model)
