"""The model directory's file set (default ignores + .truss_ignore), its manifest and its hash."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from truss_cli.errors import UsageError
from truss_cli.ignore import IgnoreRules
from truss_cli.sync.manifest import EXECUTABLE_MODE, FILE_MODE, LINK_MODE, Entry, Manifest
from truss_cli.tree import (
    TreeHasher,
    cached_content_hash,
    cached_manifest,
    content_hash,
    list_files,
    sha256_file,
)


def write(root: Path, files: dict[str, str]) -> Path:
    for relative, content in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    return root


def names(root: Path) -> list[str]:
    return [item.relative_path for item in list_files(root)]


def test_default_ignores_leave_out_version_control_caches_and_virtualenvs(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "config.yaml": "",
            "model/model.py": "",
            "model/__pycache__/model.cpython-311.pyc": "",
            "model/stale.pyc": "",
            ".git/HEAD": "",
            ".venv/bin/python": "",
            "venv/lib/x.py": "",
            # A virtualenv with an unusual name is recognised by its pyvenv.cfg.
            "py311env/pyvenv.cfg": "",
            "py311env/lib/site.py": "",
            ".DS_Store": "",
        },
    )
    assert names(tmp_path) == ["config.yaml", "model/model.py"]


def test_truss_ignore_uses_gitignore_syntax(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            ".truss_ignore": "\n".join(
                [
                    "# comments and blank lines are skipped",
                    "",
                    "*.log",
                    "!keep.log",
                    "/top-only.txt",
                    "scratch/",
                    "data/**/raw",
                    "notes?.md",
                ]
            ),
            "config.yaml": "",
            "a.log": "",
            "sub/b.log": "",
            "keep.log": "",
            "top-only.txt": "",
            "sub/top-only.txt": "",
            "scratch/x.py": "",
            "sub/scratch": "a file, not a directory: kept",
            "data/raw": "",
            "data/2024/01/raw": "",
            "data/clean": "",
            "notes1.md": "",
            "notes12.md": "",
        },
    )
    assert names(tmp_path) == [
        ".truss_ignore",
        "config.yaml",
        "data/clean",
        "keep.log",
        "notes12.md",
        "sub/scratch",
        "sub/top-only.txt",
    ]


def test_a_truss_ignore_negation_can_bring_back_a_default_ignore(tmp_path: Path) -> None:
    write(tmp_path, {".truss_ignore": "!venv/\n", "venv/tool.py": "", "config.yaml": ""})
    assert "venv/tool.py" in names(tmp_path)


@pytest.mark.parametrize(
    ("pattern", "path", "is_dir", "ignored"),
    [
        ("*.py[cod]", "a/b.pyc", False, True),
        ("*.py[cod]", "a/b.py", False, False),
        ("build/", "build", False, False),
        ("build/", "x/build", True, True),
        ("a/**/b", "a/b", False, True),
        ("a/**/b", "a/x/y/b", False, True),
        ("**/cache", "deep/er/cache", True, True),
        ("doc/*.txt", "doc/sub/x.txt", False, False),
        ("\\#literal", "#literal", False, True),
    ],
)
def test_pattern_semantics(pattern: str, path: str, is_dir: bool, ignored: bool) -> None:
    assert IgnoreRules([pattern]).ignores(path, is_dir) is ignored


def test_hash_follows_content_names_and_executable_bit_but_not_mtimes_or_ignored_files(tmp_path: Path) -> None:
    write(tmp_path, {"config.yaml": "a: 1\n", "model/model.py": "x = 1\n"})
    first = content_hash(tmp_path)

    os.utime(tmp_path / "model/model.py", (1, 1))
    write(tmp_path, {"model/__pycache__/model.pyc": "junk", ".git/HEAD": "ref"})
    assert content_hash(tmp_path) == first

    write(tmp_path, {"model/model.py": "x = 2\n"})
    changed = content_hash(tmp_path)
    assert changed != first

    (tmp_path / "model/model.py").rename(tmp_path / "model/other.py")
    assert content_hash(tmp_path) not in (first, changed)

    (tmp_path / "model/other.py").chmod(0o755)
    renamed = TreeHasher().hash_tree(tmp_path)
    (tmp_path / "model/other.py").chmod(0o644)
    assert TreeHasher().hash_tree(tmp_path) != renamed


def test_the_same_files_in_two_directories_hash_the_same(tmp_path: Path) -> None:
    files = {"config.yaml": "a: 1\n", "model/model.py": "x = 1\n", "data/w.bin": "w"}
    one = write(tmp_path / "one", files)
    other = write(tmp_path / "elsewhere/deeper/two", files)
    (one / "model/model.py").chmod(0o640)  # a different umask: only the exec bit counts
    (other / "model/model.py").chmod(0o664)
    assert content_hash(one) == content_hash(other)


def test_the_manifest_lists_each_file_with_its_digest_and_mode(tmp_path: Path) -> None:
    write(tmp_path, {"config.yaml": "a: 1\n", "bin/run.sh": "#!/bin/sh\n", "pkg/mod.py": ""})
    (tmp_path / "bin/run.sh").chmod(0o755)
    (tmp_path / "alias").symlink_to("pkg", target_is_directory=True)
    manifest = TreeHasher().manifest(list_files(tmp_path))
    assert dict(manifest) == {
        "alias": Entry(hashlib.sha256(b"pkg").hexdigest(), LINK_MODE),
        "bin/run.sh": Entry(hashlib.sha256(b"#!/bin/sh\n").hexdigest(), EXECUTABLE_MODE),
        "config.yaml": Entry(hashlib.sha256(b"a: 1\n").hexdigest(), FILE_MODE),
        "pkg/mod.py": Entry(hashlib.sha256(b"").hexdigest(), FILE_MODE),
    }
    # The hash of a directory is its manifest's, also after a trip through JSON.
    assert Manifest.from_json(manifest.to_json()).tree_hash() == content_hash(tmp_path)


def test_a_long_lived_hasher_sees_edits(tmp_path: Path) -> None:
    write(tmp_path, {"config.yaml": "", "model/model.py": "one\n"})
    old = 1_000_000_000
    os.utime(tmp_path / "model/model.py", (old, old))
    hasher = TreeHasher()
    before = hasher.hash_tree(tmp_path)
    # Same size, same (old) mtime: only the inode tells them apart, as after an editor's
    # write-to-temp-and-rename save.
    replacement = tmp_path / "model/model.py.new"
    replacement.write_text("two\n")
    os.utime(replacement, (old, old))
    replacement.replace(tmp_path / "model/model.py")
    assert hasher.hash_tree(tmp_path) != before
    assert hasher.hash_tree(tmp_path) == content_hash(tmp_path)


def test_a_directory_link_inside_the_tree_is_kept_as_a_link_not_walked(tmp_path: Path) -> None:
    write(tmp_path, {"config.yaml": "", "pkg/mod.py": ""})
    (tmp_path / "pkg/loop").symlink_to(tmp_path / "pkg", target_is_directory=True)  # a loop
    (tmp_path / "alias").symlink_to("pkg", target_is_directory=True)
    files = {item.relative_path: item for item in list_files(tmp_path)}
    assert sorted(files) == ["alias", "config.yaml", "pkg/loop", "pkg/mod.py"]
    assert files["alias"].link_target == "pkg"
    assert files["pkg/loop"].link_target == "."
    # Re-pointing a link changes the tree's hash like editing a file does.
    before = content_hash(tmp_path)
    write(tmp_path, {"other/x.py": ""})
    after_new_dir = content_hash(tmp_path)
    (tmp_path / "alias").unlink()
    (tmp_path / "alias").symlink_to("other", target_is_directory=True)
    assert len({before, after_new_dir, content_hash(tmp_path)}) == 3


def test_a_file_link_inside_the_tree_is_followed(tmp_path: Path) -> None:
    write(tmp_path, {"config.yaml": "", "data/weights-v2.bin": "w2"})
    (tmp_path / "data/weights.bin").symlink_to("weights-v2.bin")
    files = {item.relative_path: item for item in list_files(tmp_path)}
    assert sorted(files) == ["config.yaml", "data/weights-v2.bin", "data/weights.bin"]
    assert files["data/weights.bin"].link_target is None
    assert files["data/weights.bin"].path.read_text() == "w2"


def outside_secret(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    write(home, {".ssh/id_rsa": "PRIVATE-KEY-7f3a"})
    return home


def test_a_link_to_a_file_outside_the_tree_is_refused_by_name(tmp_path: Path) -> None:
    home = outside_secret(tmp_path)
    root = write(tmp_path / "model", {"config.yaml": ""})
    (root / "data").mkdir()
    (root / "data/key").symlink_to(home / ".ssh/id_rsa")
    with pytest.raises(UsageError) as raised:
        list_files(root)
    assert raised.value.message.startswith("data/key: a symbolic link to ")
    assert str(home / ".ssh/id_rsa") in raised.value.message
    assert raised.value.hint == "copy it into the model directory, or list it in .truss_ignore"


def test_a_link_to_a_directory_outside_the_tree_is_refused_before_walking_it(tmp_path: Path) -> None:
    root = write(tmp_path / "model", {"config.yaml": ""})
    (root / "everything").symlink_to("/", target_is_directory=True)
    with pytest.raises(UsageError, match=r"^everything: a symbolic link to /, outside "):
        list_files(root)


def test_an_ignored_link_to_outside_is_fine(tmp_path: Path) -> None:
    home = outside_secret(tmp_path)
    root = write(tmp_path / "model", {"config.yaml": "", ".truss_ignore": "home-link\ndata/key\n"})
    (root / "home-link").symlink_to(home, target_is_directory=True)
    (root / "data").mkdir()
    (root / "data/key").symlink_to(home / ".ssh/id_rsa")
    # A default ignore covers links too: a virtualenv's python points outside.
    (root / ".venv/bin").mkdir(parents=True)
    (root / ".venv/bin/python").symlink_to(home / ".ssh/id_rsa")
    assert names(root) == [".truss_ignore", "config.yaml"]


def test_a_dangling_link_is_refused_by_name(tmp_path: Path) -> None:
    root = write(tmp_path / "model", {"config.yaml": ""})
    (root / "model").mkdir()
    (root / "model/gone.py").symlink_to("was-here.py")
    with pytest.raises(UsageError, match=r"^model/gone.py: a symbolic link to was-here.py, which does not exist"):
        list_files(root)


class CountingDigest:
    """Records which files had their contents read."""

    def __init__(self) -> None:
        self.read: list[str] = []

    def __call__(self, path: Path) -> bytes:
        self.read.append(path.name)
        return sha256_file(path)


def age(*paths: Path) -> None:
    # Older than the racy window: such files may be remembered between runs.
    for path in paths:
        os.utime(path, (1_000_000_000, 1_000_000_000))


def test_a_second_run_reads_no_unchanged_file_and_rereads_a_changed_one(tmp_path: Path) -> None:
    tree = write(tmp_path / "tree", {"config.yaml": "a: 1\n", "data/weights.bin": "w" * 1000, "model/model.py": "x = 1\n"})
    age(*[item.path for item in list_files(tree)])
    cache = tmp_path / "cache"

    first_reads = CountingDigest()
    first = cached_manifest(tree, list_files(tree), cache, first_reads).tree_hash()
    assert sorted(first_reads.read) == ["config.yaml", "model.py", "weights.bin"]
    assert first == content_hash(tree)

    # A new process would start from the store on disk: nothing is read again.
    unchanged_reads = CountingDigest()
    assert cached_content_hash(tree, list_files(tree), cache, unchanged_reads) == first
    assert unchanged_reads.read == []

    # Same size, different content and mtime: re-read, and the hash follows.
    (tree / "model/model.py").write_text("x = 2\n")
    changed_reads = CountingDigest()
    changed = cached_content_hash(tree, list_files(tree), cache, changed_reads)
    assert changed_reads.read == ["model.py"]
    assert changed != first
    assert changed == content_hash(tree)


def test_a_recently_written_file_is_always_reread(tmp_path: Path) -> None:
    # Within the filesystem's timestamp granularity a second write could keep size and
    # mtime; a fresh file is therefore never trusted from the store.
    tree = write(tmp_path / "tree", {"config.yaml": "a: 1\n"})
    cache = tmp_path / "cache"
    cached_content_hash(tree, list_files(tree), cache)
    reads = CountingDigest()
    cached_content_hash(tree, list_files(tree), cache, reads)
    assert reads.read == ["config.yaml"]


def test_a_replaced_file_with_the_same_size_and_mtime_is_reread(tmp_path: Path) -> None:
    tree = write(tmp_path / "tree", {"config.yaml": "one\n"})
    age(tree / "config.yaml")
    cache = tmp_path / "cache"
    first = cached_content_hash(tree, list_files(tree), cache)
    replacement = tree / "config.yaml.new"
    replacement.write_text("two\n")
    age(replacement)
    replacement.replace(tree / "config.yaml")  # a new inode, as an editor's atomic save
    assert cached_content_hash(tree, list_files(tree), cache) != first


def test_a_corrupt_store_is_ignored(tmp_path: Path) -> None:
    tree = write(tmp_path / "tree", {"config.yaml": "a: 1\n"})
    age(tree / "config.yaml")
    cache = tmp_path / "cache"
    first = cached_content_hash(tree, list_files(tree), cache)
    (store,) = (cache / "tree-digests").iterdir()
    store.write_text("{not json")
    assert cached_content_hash(tree, list_files(tree), cache) == first
