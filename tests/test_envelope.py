"""The patch envelope (truss_cli.sync.envelope): a tar of patch.json and digest-named blobs,
read as hostile input."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import pytest

from truss_cli.sync.envelope import EnvelopeError, check_relative_path, envelope_bytes, read_envelope, write_envelope

DOCUMENT = {"format": 1, "from_hash": "a" * 64, "to_hash": "b" * 64, "puts": [], "deletes": []}


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def raw_tar(members: list[tarfile.TarInfo | tuple[str, bytes]]) -> bytes:
    """A tar with exactly these members, in order (a hostile sender's envelope)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for member in members:
            if isinstance(member, tarfile.TarInfo):
                tar.addfile(member)
            else:
                name, data = member
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_a_written_envelope_reads_back_with_its_blobs(tmp_path: Path) -> None:
    on_disk = tmp_path / "weights.bin"
    on_disk.write_bytes(b"\x00\x01" * 1000)
    blobs = {digest(b"print('hi')\n"): b"print('hi')\n", digest(on_disk.read_bytes()): on_disk}
    out = io.BytesIO()
    write_envelope(out, DOCUMENT, blobs)
    out.seek(0)
    document = read_envelope(out, tmp_path / "blobs", max_bytes=1 << 20)
    assert document == DOCUMENT
    stored = {path.name: path.read_bytes() for path in (tmp_path / "blobs").iterdir()}
    assert stored == {digest(b"print('hi')\n"): b"print('hi')\n", digest(on_disk.read_bytes()): on_disk.read_bytes()}


def test_the_same_patch_is_the_same_bytes() -> None:
    blobs = {digest(b"x"): b"x", digest(b"y"): b"y"}
    assert envelope_bytes(DOCUMENT, blobs) == envelope_bytes(dict(reversed(DOCUMENT.items())), dict(reversed(blobs.items())))


def test_a_blob_whose_bytes_do_not_match_its_name_is_refused_and_not_kept(tmp_path: Path) -> None:
    lying = raw_tar([("patch.json", b"{}"), ("blobs/" + digest(b"good"), b"evil")])
    with pytest.raises(EnvelopeError, match="hash to .*not to its name"):
        read_envelope(io.BytesIO(lying), tmp_path / "blobs", max_bytes=1 << 20)
    assert list((tmp_path / "blobs").iterdir()) == []


@pytest.mark.parametrize(
    "member,problem",
    [
        (("../../escape", b"x"), "expected blobs/<sha256"),
        (("blobs/../../../etc/x" + "0" * 10, b"x"), "expected blobs/<sha256"),
        (("/abs/" + "0" * 64, b"x"), "expected blobs/<sha256"),
        (("blobs/" + "A" * 64, b"x"), "expected blobs/<sha256"),
    ],
)
def test_a_member_named_outside_the_blob_pattern_is_refused_with_nothing_written(tmp_path: Path, member, problem) -> None:
    envelope = raw_tar([("patch.json", b"{}"), member])
    with pytest.raises(EnvelopeError, match=problem):
        read_envelope(io.BytesIO(envelope), tmp_path / "blobs", max_bytes=1 << 20)
    assert [path for path in tmp_path.rglob("*") if path.is_file()] == []


def test_links_and_directories_are_refused(tmp_path: Path) -> None:
    link = tarfile.TarInfo("blobs/" + digest(b"x"))
    link.type = tarfile.SYMTYPE
    link.linkname = "/etc/passwd"
    with pytest.raises(EnvelopeError, match="only regular files"):
        read_envelope(io.BytesIO(raw_tar([("patch.json", b"{}"), link])), tmp_path / "blobs", max_bytes=1 << 20)
    directory = tarfile.TarInfo("blobs")
    directory.type = tarfile.DIRTYPE
    with pytest.raises(EnvelopeError, match="only regular files"):
        read_envelope(io.BytesIO(raw_tar([("patch.json", b"{}"), directory])), tmp_path / "blobs", max_bytes=1 << 20)
    assert not (tmp_path / "blobs").exists() or list((tmp_path / "blobs").iterdir()) == []


def test_patch_json_must_come_first_and_be_a_json_object(tmp_path: Path) -> None:
    blob = ("blobs/" + digest(b"x"), b"x")
    with pytest.raises(EnvelopeError, match="first member must be the file patch.json"):
        read_envelope(io.BytesIO(raw_tar([blob, ("patch.json", b"{}")])), tmp_path, max_bytes=1 << 20)
    with pytest.raises(EnvelopeError, match="not UTF-8 JSON"):
        read_envelope(io.BytesIO(raw_tar([("patch.json", b"{nope")])), tmp_path, max_bytes=1 << 20)
    with pytest.raises(EnvelopeError, match="expected a JSON object"):
        read_envelope(io.BytesIO(raw_tar([("patch.json", b"[1]")])), tmp_path, max_bytes=1 << 20)
    with pytest.raises(EnvelopeError, match="empty envelope"):
        read_envelope(io.BytesIO(raw_tar([])), tmp_path, max_bytes=1 << 20)
    with pytest.raises(EnvelopeError, match="not a tar envelope"):
        read_envelope(io.BytesIO(b"PK\x03\x04 this is a zip" * 40), tmp_path, max_bytes=1 << 20)


def test_an_envelope_over_the_size_limit_is_refused_naming_it(tmp_path: Path) -> None:
    big = b"z" * 200_000
    envelope = envelope_bytes(DOCUMENT, {digest(big): big})
    with pytest.raises(EnvelopeError, match="larger than the 100000 bytes allowed"):
        read_envelope(io.BytesIO(envelope), tmp_path / "blobs", max_bytes=100_000)
    assert not (tmp_path / "blobs").exists() or list((tmp_path / "blobs").iterdir()) == []


@pytest.mark.parametrize("path", ["/etc/passwd", "../x", "a/../b", "a//b", "./a", "a/", "", "a\\b", "a\0b", None])
def test_paths_outside_a_tree_are_refused(path) -> None:
    with pytest.raises(EnvelopeError, match="not a path inside the tree|expected a non-empty relative path"):
        check_relative_path(path)


def test_ordinary_relative_paths_pass() -> None:
    for path in ("model/model.py", "data/weights.bin", "packages/pkg/__init__.py", "config.yaml"):
        assert check_relative_path(path) == path
