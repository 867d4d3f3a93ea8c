"""The tree manifest format and the one definition of the tree hash (truss_cli.sync.manifest)."""

from __future__ import annotations

import hashlib
import json

import pytest

from truss_cli.sync.manifest import (
    EXECUTABLE_MODE,
    FILE_MODE,
    LINK_MODE,
    Entry,
    Manifest,
    ManifestError,
    link_entry,
)

A = hashlib.sha256(b"a").hexdigest()
B = hashlib.sha256(b"b").hexdigest()


def test_the_tree_hash_is_the_sha256_of_the_documented_bytes() -> None:
    # Written out by hand from the module docstring: another implementation (a replica, a
    # control plane in another language) must get the same hash from the same text.
    manifest = Manifest({"model/model.py": Entry(A, FILE_MODE), "bin/run": Entry(B, EXECUTABLE_MODE)})
    expected = hashlib.sha256(
        b"truss-tree-v1\n" + b"100755 " + B.encode() + b" bin/run\0" + b"100644 " + A.encode() + b" model/model.py\0"
    ).hexdigest()
    assert manifest.tree_hash() == expected


def test_the_order_entries_were_given_in_does_not_matter() -> None:
    one = Manifest({"a": Entry(A, FILE_MODE), "b/c": Entry(B, FILE_MODE)})
    other = Manifest({"b/c": Entry(B, FILE_MODE), "a": Entry(A, FILE_MODE)})
    assert one.tree_hash() == other.tree_hash()
    assert one == other


def test_paths_sort_by_their_utf8_bytes() -> None:
    # "é" (U+00E9) sorts after "z" in both code points and UTF-8 bytes, but a name that is
    # not valid UTF-8 (carried as a lone surrogate) must sort as its raw byte 0xff would.
    raw = b"\xff".decode("utf-8", "surrogateescape")
    manifest = Manifest({raw: Entry(A, FILE_MODE), "\U0001f600": Entry(B, FILE_MODE)})
    expected = hashlib.sha256(
        b"truss-tree-v1\n"
        + b"100644 " + B.encode() + b" " + "\U0001f600".encode() + b"\0"
        + b"100644 " + A.encode() + b" \xff\0"
    ).hexdigest()
    assert manifest.tree_hash() == expected


@pytest.mark.parametrize(
    "changed",
    [
        {"model/model.py": Entry(B, FILE_MODE)},  # content
        {"model/model.py": Entry(A, EXECUTABLE_MODE)},  # exec bit
        {"model/other.py": Entry(A, FILE_MODE)},  # rename
        {"model/model.py": Entry(A, FILE_MODE), "model/new.py": Entry(A, FILE_MODE)},  # added file
        {},  # deleted file
    ],
)
def test_every_kind_of_change_changes_the_hash(changed: dict[str, Entry]) -> None:
    assert Manifest(changed).tree_hash() != Manifest({"model/model.py": Entry(A, FILE_MODE)}).tree_hash()


def test_a_directory_link_hashes_its_target() -> None:
    assert link_entry("pkg").mode == LINK_MODE
    assert Manifest({"alias": link_entry("pkg")}).tree_hash() != Manifest({"alias": link_entry("other")}).tree_hash()
    # A link is not a file whose content happens to be the target's name.
    as_file = Entry(hashlib.sha256(b"pkg").hexdigest(), FILE_MODE)
    assert Manifest({"alias": link_entry("pkg")}).tree_hash() != Manifest({"alias": as_file}).tree_hash()


def test_a_manifest_round_trips_through_json() -> None:
    raw = b"caf\xe9.bin".decode("utf-8", "surrogateescape")  # latin-1 name on a Linux disk
    manifest = Manifest(
        {"config.yaml": Entry(A, FILE_MODE), "bin/run": Entry(B, EXECUTABLE_MODE), "alias": link_entry("pkg"), raw: Entry(A, FILE_MODE)}
    )
    text = manifest.to_json()
    assert json.loads(text)["files"]["config.yaml"] == {"sha256": A, "mode": 0o100644}
    again = Manifest.from_json(text)
    assert again == manifest
    assert again.tree_hash() == manifest.tree_hash()
    assert again[raw] == Entry(A, FILE_MODE)


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ("[]", 'expected an object with "format": 1'),
        ('{"format": 2, "files": {}}', 'expected an object with "format": 1, got 2'),
        ('{"format": 1}', "files: expected an object of path -> {sha256, mode}"),
        ('{"format": 1, "files": {"a": {"sha256": "' + A + '"}}}', "files.a: expected an object with exactly sha256 and mode"),
        ('{"format": 1, "files": {"a": {"sha256": "xyz", "mode": 33188}}}', "a: sha256: expected 64 lowercase hex digits, got 'xyz'"),
        ('{"format": 1, "files": {"a": {"sha256": "' + A + '", "mode": 420}}}', "a: mode: expected one of 100644, 100755, 120000 (octal), got 644"),
        ('{"format": 1, "files": {"../etc/passwd": {"sha256": "' + A + '", "mode": 33188}}}', "'../etc/passwd': expected a relative path"),
        ('{"format": 1, "files": {"/abs": {"sha256": "' + A + '", "mode": 33188}}}', "'/abs': expected a relative path"),
        ("{not json", "manifest: not JSON"),
    ],
)
def test_a_malformed_manifest_is_refused_naming_the_entry(document: str, message: str) -> None:
    with pytest.raises(ManifestError) as raised:
        Manifest.from_json(document)
    assert message in str(raised.value)
