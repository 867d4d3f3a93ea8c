"""Packing a model directory for `truss push`: what is sent, deterministically, within limits."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import tarfile
from pathlib import Path

import pytest

from truss_cli.archive.format import FILES_PREFIX, MANIFEST_MEMBER, ArchiveError, Limits
from truss_cli.archive.pack import PackPlan, plan_pack, write_archive
from truss_cli.errors import UsageError
from truss_cli.sync.manifest import Manifest


def write(root: Path, files: dict[str, str | bytes]) -> Path:
    for relative, content in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    return root


def model(root: Path) -> Path:
    return write(
        root,
        {"config.yaml": "model_name: m\n", "model/__init__.py": "", "model/model.py": "class Model: ...\n", "data/w.bin": b"w" * 5000},
    )


def pack(plan: PackPlan, lacking: list[str] | None = None) -> tuple[bytes, str]:
    buffer = io.BytesIO()
    info = write_archive(plan, buffer, lacking=lacking)
    data = buffer.getvalue()
    assert info.size == len(data) and info.sha256 == hashlib.sha256(data).hexdigest()
    return data, info.sha256


def members(data: bytes) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        return tar.getnames()


def test_the_same_tree_packs_to_the_same_bytes_wherever_and_whenever_it_was_written(tmp_path: Path) -> None:
    first = model(tmp_path / "one")
    second = tmp_path / "elsewhere" / "two"
    shutil.copytree(first, second)
    os.utime(second / "config.yaml", (1, 1))
    os.chmod(second / "model" / "model.py", 0o600)  # permissions other than the exec bit do not count
    digests = {pack(plan_pack(root))[1] for root in (first, first, second)}
    assert len(digests) == 1
    (second / "config.yaml").write_text("model_name: other\n")
    assert pack(plan_pack(second))[1] not in digests


def test_the_archive_holds_the_manifest_then_the_files_the_tree_lists(tmp_path: Path) -> None:
    root = model(tmp_path / "m")
    write(root, {".truss_ignore": "*.log\n", "debug.log": "x", "model/__pycache__/model.cpython-311.pyc": "x"})
    plan = plan_pack(root)
    data, _ = pack(plan)
    assert members(data) == [MANIFEST_MEMBER] + [
        FILES_PREFIX + path for path in [".truss_ignore", "config.yaml", "data/w.bin", "model/__init__.py", "model/model.py"]
    ]
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        manifest = Manifest.from_json(tar.extractfile(MANIFEST_MEMBER).read())  # type: ignore[union-attr]
        assert tar.extractfile(FILES_PREFIX + "data/w.bin").read() == b"w" * 5000  # type: ignore[union-attr]
        assert {member.uid for member in tar} == {0} and {member.mtime for member in tar} == {0}
    assert manifest == plan.manifest


def test_only_the_contents_the_remote_lacks_are_sent(tmp_path: Path) -> None:
    root = model(tmp_path / "m")
    write(root, {"copy/w.bin": b"w" * 5000})  # the same content at a second path
    plan = plan_pack(root)
    assert len(plan.digests()) == 4  # five files, four contents
    unchanged, _ = pack(plan, lacking=[])
    assert members(unchanged) == [MANIFEST_MEMBER]
    write(root, {"model/model.py": "class Model:\n    pass\n"})
    changed = plan_pack(root)
    lacking = sorted(set(changed.digests()) - set(plan.digests()))
    assert [item.path for item in changed.to_send(lacking)] == ["model/model.py"]
    assert members(pack(changed, lacking)[0]) == [MANIFEST_MEMBER, FILES_PREFIX + "model/model.py"]
    weights = hashlib.sha256(b"w" * 5000).hexdigest()
    assert [item.path for item in plan.to_send([weights])] == ["copy/w.bin"]  # sent once


def test_verbose_listing_is_largest_first_and_progress_counts_every_byte(tmp_path: Path) -> None:
    root = model(tmp_path / "m")
    plan = plan_pack(root)
    assert [(item.path, item.size) for item in plan.largest_first()][:2] == [("data/w.bin", 5000), ("model/model.py", 17)]
    progress: list[int] = []
    write_archive(plan, io.BytesIO(), on_progress=progress.append)
    assert sum(progress) == plan.total_bytes == 5000 + 17 + 14


def test_a_tree_over_the_size_limit_is_refused_naming_its_largest_files(tmp_path: Path) -> None:
    root = model(tmp_path / "m")
    write(root, {"data/big.bin": b"b" * 20_000})
    with pytest.raises(ArchiveError) as caught:
        plan_pack(root, Limits(max_bytes=10_000))
    message = caught.value.message
    assert "over the limit of 9.8 KiB" in message
    assert message.index("data/big.bin (19.5 KiB)") < message.index("data/w.bin (4.9 KiB)")
    assert ".truss_ignore" in (caught.value.hint or "")
    with pytest.raises(ArchiveError, match="5 files to send, over the limit of 3"):
        plan_pack(root, Limits(max_files=3))
    assert plan_pack(root, Limits(max_bytes=30_000)).total_bytes == 25_031


def test_links_are_refused_or_kept_as_the_image_build_does(tmp_path: Path) -> None:
    root = model(tmp_path / "m")
    (root / "weights").symlink_to("data", target_is_directory=True)
    plan = plan_pack(root)
    (link,) = [item for item in plan.files if item.path == "weights"]
    assert link.link_target == "data"
    with tarfile.open(fileobj=io.BytesIO(pack(plan)[0]), mode="r:gz") as tar:
        assert tar.getmember(FILES_PREFIX + "weights").linkname == "data"
    (tmp_path / "secret").write_text("key")
    (root / "leak").symlink_to(tmp_path / "secret")
    with pytest.raises(UsageError, match="leak: a symbolic link to .*outside"):
        plan_pack(root)


def test_a_file_name_that_is_not_utf8_is_refused_by_name(tmp_path: Path) -> None:
    root = model(tmp_path / "m")
    (root / os.fsdecode(b"bad\xffname.txt")).write_text("x")
    with pytest.raises(ArchiveError, match="bad\ufffdname.txt: the file name is not valid UTF-8"):
        plan_pack(root)


def test_a_file_changed_after_planning_is_not_sent_with_a_stale_manifest(tmp_path: Path) -> None:
    root = model(tmp_path / "m")
    plan = plan_pack(root)
    write(root, {"data/w.bin": b"v" * 5000})  # same size, other content
    with pytest.raises(ArchiveError, match="data/w.bin: changed while it was being packed"):
        write_archive(plan, io.BytesIO())
    write(root, {"data/w.bin": b"v" * 10})
    with pytest.raises(ArchiveError, match="data/w.bin: changed while it was being packed"):
        write_archive(plan, io.BytesIO())


def test_planning_with_a_cache_dir_gives_the_same_manifest(tmp_path: Path) -> None:
    root = model(tmp_path / "m")
    cached = plan_pack(root, cache_dir=tmp_path / "cache")
    assert cached.manifest == plan_pack(root).manifest
    assert list((tmp_path / "cache" / "tree-digests").iterdir())


def test_a_missing_directory_is_named(tmp_path: Path) -> None:
    with pytest.raises(ArchiveError, match="nowhere: not a directory"):
        plan_pack(tmp_path / "nowhere")
