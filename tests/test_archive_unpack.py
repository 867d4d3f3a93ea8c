"""Unpacking pushed archives on the control plane: a tree arrives whole and checked, and a
hostile archive is refused, naming what is wrong, before anything is written."""

from __future__ import annotations

import hashlib
import io
import os
import stat
import tarfile
from pathlib import Path

import pytest

from truss_cli.archive.format import ArchiveError, Limits
from truss_cli.archive.pack import plan_pack, write_archive
from truss_cli.archive.unpack import unpack_archive
from truss_cli.controlplane.store import BlobStore, StoreError
from truss_cli.sync.manifest import FILE_MODE, Entry, Manifest, link_entry


def write(root: Path, files: dict[str, str]) -> Path:
    for relative, content in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    return root


def packed(root: Path, lacking: list[str] | None = None) -> io.BytesIO:
    buffer = io.BytesIO()
    write_archive(plan_pack(root), buffer, lacking=lacking)
    buffer.seek(0)
    return buffer


def tree(root: Path) -> dict[str, str]:
    return {
        path.relative_to(root).as_posix(): (os.readlink(path) if path.is_symlink() else path.read_text())
        for path in root.rglob("*")
        if path.is_symlink() or path.is_file()
    }


def test_a_packed_tree_unpacks_to_the_same_files_modes_and_links(tmp_path: Path) -> None:
    source = write(tmp_path / "src", {"config.yaml": "model_name: m\n", "model/model.py": "x = 1\n", "data/a/w.txt": "w"})
    (source / "run.sh").write_text("#!/bin/sh\n")
    (source / "run.sh").chmod(0o700)
    (source / "model" / "weights").symlink_to("../data/a", target_is_directory=True)
    (source / "secret.txt").write_text("s")
    (source / "secret.txt").chmod(0o600)
    destination = tmp_path / "out" / "tree"
    manifest = unpack_archive(packed(source), destination)
    assert manifest == plan_pack(source).manifest
    assert tree(destination) == tree(source)
    assert stat.S_IMODE((destination / "run.sh").stat().st_mode) == 0o755
    assert stat.S_IMODE((destination / "secret.txt").stat().st_mode) == 0o644
    assert (destination / "model" / "weights" / "w.txt").read_text() == "w"
    assert os.listdir(tmp_path / "out") == ["tree"]  # no staging directory left behind


def keep_contents(blobs: BlobStore, root: Path, manifest) -> int:
    """Store the contents of an unpacked tree not stored yet (as the control plane does)."""
    added = 0
    for path, entry in sorted(manifest.items()):
        if not blobs.has(entry.sha256):
            with open(root / path, "rb") as content:
                blobs.write(content, entry.sha256)
            added += 1
    return added


def test_a_partial_archive_is_completed_from_stored_blobs(tmp_path: Path) -> None:
    source = write(tmp_path / "src", {"config.yaml": "v1", "data/big.txt": "big", "data/copy.txt": "big"})
    blobs = BlobStore(tmp_path / "blobs")
    plan = plan_pack(source)
    assert blobs.missing(plan.digests()) == plan.digests()
    first = unpack_archive(packed(source, blobs.missing(plan.digests())), tmp_path / "t1", blobs=blobs.find)
    assert keep_contents(blobs, tmp_path / "t1", first) == 2  # two contents, three files
    assert blobs.missing(plan.digests()) == []
    write(source, {"config.yaml": "v2"})
    lacking = blobs.missing(plan_pack(source).digests())
    assert lacking == [hashlib.sha256(b"v2").hexdigest()]
    second = unpack_archive(packed(source, lacking), tmp_path / "t2", blobs=blobs.find)
    assert tree(tmp_path / "t2") == {"config.yaml": "v2", "data/big.txt": "big", "data/copy.txt": "big"}
    assert second.tree_hash() == plan_pack(source).manifest.tree_hash()


def test_a_partial_archive_without_the_blobs_is_refused_naming_what_is_missing(tmp_path: Path) -> None:
    source = write(tmp_path / "src", {"config.yaml": "v1", "data/big.txt": "big"})
    big = hashlib.sha256(b"v1").hexdigest()
    with pytest.raises(ArchiveError, match="1 files of the manifest are neither in it nor stored: data/big.txt"):
        unpack_archive(packed(source, [big]), tmp_path / "out", blobs=BlobStore(tmp_path / "blobs").find)
    assert sorted(os.listdir(tmp_path)) == ["src"]


def test_an_archive_of_another_tree_than_announced_is_refused(tmp_path: Path) -> None:
    source = write(tmp_path / "src", {"config.yaml": "v1"})
    with pytest.raises(ArchiveError, match="expected 0000"):
        unpack_archive(packed(source), tmp_path / "out", expected_tree_hash="0" * 64)
    assert not (tmp_path / "out").exists()


def test_an_existing_destination_is_not_overwritten(tmp_path: Path) -> None:
    source = write(tmp_path / "src", {"config.yaml": "v1"})
    write(tmp_path / "out", {"keep.txt": "mine"})
    with pytest.raises(ArchiveError, match="out: already exists"):
        unpack_archive(packed(source), tmp_path / "out")
    assert tree(tmp_path / "out") == {"keep.txt": "mine"}


# Hostile archives, crafted member by member. Each member: (TarInfo, content or None).


def member(name: str, content: bytes = b"", kind: bytes = tarfile.REGTYPE, linkname: str = "") -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = len(content) if kind == tarfile.REGTYPE else 0
    info.linkname = linkname
    info.mode = 0o644
    return info, content


def manifest_member(entries: dict[str, Entry]) -> tuple[tarfile.TarInfo, bytes]:
    return member("manifest.json", Manifest(entries).to_json().encode())


def file_entry(content: bytes) -> Entry:
    return Entry(hashlib.sha256(content).hexdigest(), FILE_MODE)


def craft(path: Path, members: list[tuple[tarfile.TarInfo, bytes]], fmt: int = tarfile.PAX_FORMAT) -> Path:
    with tarfile.open(path, "w:gz", format=fmt, encoding="utf-8", errors="surrogateescape") as tar:
        for info, content in members:
            tar.addfile(info, io.BytesIO(content) if info.isreg() else None)
    return path


OK = {"ok.txt": file_entry(b"ok")}
HOSTILE = {
    "absolute path": ([manifest_member(OK), member("/etc/passwd", b"x")], "/etc/passwd: an absolute path"),
    "dot-dot": ([manifest_member(OK), member("files/../../evil", b"x")], "files/../../evil: a path with an empty"),
    "outside files/": ([manifest_member(OK), member("evil.txt", b"x")], "evil.txt: outside files/"),
    "not in the manifest": ([manifest_member(OK), member("files/extra.txt", b"x")], "files/extra.txt: not in the archive's manifest"),
    "symlink to an absolute path": (
        [manifest_member({"l": link_entry("/etc")}), member("files/l", kind=tarfile.SYMTYPE, linkname="/etc")],
        "files/l: a link to '/etc', outside the tree",
    ),
    "symlink climbing out": (
        [manifest_member({"a/l": link_entry("../../x")}), member("files/a/l", kind=tarfile.SYMTYPE, linkname="../../x")],
        "files/a/l: a link to '../../x', outside the tree",
    ),
    "symlink chain climbing out": (
        [
            manifest_member({"x/up": link_entry(".."), "y": link_entry("x/up/.."), "x/f": file_entry(b"f")}),
            member("files/x/f", b"f"),
            member("files/x/up", kind=tarfile.SYMTYPE, linkname=".."),
            member("files/y", kind=tarfile.SYMTYPE, linkname="x/up/.."),
        ],
        "files/y: a link that leads outside the tree",
    ),
    "file under a link": (
        [
            manifest_member({"l": link_entry("d"), "l/f": file_entry(b"f")}),
            member("files/l", kind=tarfile.SYMTYPE, linkname="d"),
            member("files/l/f", b"f"),
        ],
        "l/f: under l, which is a link",
    ),
    "hard link": (
        [manifest_member(OK), member("files/ok.txt", kind=tarfile.LNKTYPE, linkname="/etc/passwd")],
        "files/ok.txt: a hard link to '/etc/passwd'",
    ),
    "device file": ([manifest_member(OK), member("files/ok.txt", kind=tarfile.CHRTYPE)], "files/ok.txt: a device file"),
    "fifo": ([manifest_member(OK), member("files/ok.txt", kind=tarfile.FIFOTYPE)], "files/ok.txt: a FIFO"),
    "directory entry": ([manifest_member(OK), member("files/d", kind=tarfile.DIRTYPE)], "files/d: a directory entry"),
    "duplicate": ([manifest_member(OK), member("files/ok.txt", b"ok"), member("files/ok.txt", b"ok")], "files/ok.txt: appears twice"),
    "content not matching the manifest": (
        [manifest_member(OK), member("files/ok.txt", b"evil")],
        "files/ok.txt: its content does not match its manifest entry",
    ),
    "manifest not first": ([member("files/ok.txt", b"ok"), manifest_member(OK)], "expected manifest.json (a file) first"),
    "manifest not valid": ([member("manifest.json", b'{"format": 9}')], 'expected an object with "format": 1'),
    "empty": ([], "empty (expected manifest.json first)"),
}


@pytest.mark.parametrize("case", HOSTILE, ids=list(HOSTILE))
def test_a_hostile_archive_is_refused_before_anything_is_written(tmp_path: Path, case: str) -> None:
    members, message = HOSTILE[case]
    archive = craft(tmp_path / "hostile.tar.gz", members)
    (tmp_path / "out").mkdir()
    with pytest.raises(ArchiveError) as caught:
        unpack_archive(archive, tmp_path / "out" / "tree")
    assert message in caught.value.message
    assert os.listdir(tmp_path / "out") == []
    assert not Path("/evil").exists() and not (tmp_path / "evil").exists()


def test_a_member_name_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    archive = craft(
        tmp_path / "a.tar.gz", [manifest_member(OK), member(os.fsdecode(b"files/bad\xff"), b"x")], fmt=tarfile.GNU_FORMAT
    )
    with pytest.raises(ArchiveError, match="files/bad\ufffd: the name is not valid UTF-8"):
        unpack_archive(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_archives_over_the_limits_are_refused(tmp_path: Path) -> None:
    entries = {f"f{index}.txt": file_entry(b"x" * 100) for index in range(5)}
    archive = craft(tmp_path / "a.tar.gz", [manifest_member(entries)] + [member(f"files/f{i}.txt", b"x" * 100) for i in range(5)])
    with pytest.raises(ArchiveError, match="more than 400 B of files \\(the limit\\), at files/f4.txt"):
        unpack_archive(archive, tmp_path / "out", limits=Limits(max_bytes=400))
    with pytest.raises(ArchiveError, match="5 files, over the limit of 4"):
        unpack_archive(archive, tmp_path / "out", limits=Limits(max_files=4))
    assert not (tmp_path / "out").exists()
    unpack_archive(archive, tmp_path / "out", limits=Limits(max_bytes=500, max_files=5))
    assert len(os.listdir(tmp_path / "out")) == 5


def test_bytes_that_are_not_an_archive_are_named_as_such(tmp_path: Path) -> None:
    (tmp_path / "junk").write_bytes(b"this is not gzip")
    with pytest.raises(ArchiveError, match="not a readable gzip-compressed tar archive"):
        unpack_archive(tmp_path / "junk", tmp_path / "out")


def test_blob_digests_from_the_network_are_checked(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="not a sha256 digest .*'../../etc'"):
        BlobStore(tmp_path).missing(["../../etc"])
