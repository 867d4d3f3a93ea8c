"""Content-addressed blobs: verified while streaming in, published whole, swept when no kept
tree needs them (and only after a grace period)."""

from __future__ import annotations

import hashlib
import io
import os
import time
from pathlib import Path

import pytest

from store_support import backend, database_url, store  # noqa: F401 (fixtures)
from truss_cli.archive.pack import plan_pack, write_archive
from truss_cli.controlplane.store import BlobStore, DigestMismatch, NotFound, Store, StoreError, TooLarge
from truss_cli.controlplane.errors import ApiError
from truss_cli.controlplane.trees import Trees
from truss_cli.sync.manifest import FILE_MODE, Entry


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def test_a_blob_is_stored_under_its_digest_and_reads_back(tmp_path: Path):
    blobs = BlobStore(tmp_path / "blobs")
    data = os.urandom(3 << 20)  # several chunks
    digest = _digest(data)
    path = blobs.write(io.BytesIO(data), digest)
    assert path == tmp_path / "blobs" / "sha256" / digest[:2] / digest
    with blobs.open(digest) as f:
        assert f.read() == data
    assert blobs.verify(digest)
    # Chunks from an async route work the same way.
    chunked = b"abc" * 1000
    with blobs.writer(_digest(chunked)) as writer:
        for start in range(0, len(chunked), 7):
            writer.write(chunked[start:start + 7])
        writer.commit()
    assert blobs.has(_digest(chunked))


def test_bytes_that_do_not_match_their_digest_leave_nothing(tmp_path: Path):
    blobs = BlobStore(tmp_path / "blobs")
    claimed = _digest(b"what the client said")
    with pytest.raises(DigestMismatch, match=claimed):
        blobs.write([b"what ", b"arrived"], claimed)
    assert not blobs.has(claimed)
    assert _files(tmp_path / "blobs") == []
    with pytest.raises(NotFound):
        blobs.open(claimed)


def test_an_upload_over_the_limit_or_dropped_midway_leaves_nothing(tmp_path: Path):
    blobs = BlobStore(tmp_path / "blobs")
    data = b"x" * 5000
    with pytest.raises(TooLarge):
        blobs.write([data[:3000], data[3000:]], _digest(data), max_bytes=4096)
    with pytest.raises(ConnectionResetError):
        with blobs.writer(_digest(data)) as writer:
            writer.write(data[:100])
            raise ConnectionResetError("client went away")
    assert _files(tmp_path / "blobs") == []


def test_missing_names_what_the_client_must_upload(tmp_path: Path):
    blobs = BlobStore(tmp_path / "blobs")
    have = _digest(b"have")
    blobs.write([b"have"], have)
    lack = _digest(b"lack")
    assert blobs.missing([have, lack, lack]) == [lack]
    assert blobs.missing([]) == []
    with pytest.raises(StoreError, match="not a sha256 digest"):
        blobs.missing(["../../etc/passwd"])


def _age(path: Path, seconds: float) -> None:
    past = time.time() - seconds
    os.utime(path, (past, past))


def test_the_sweep_keeps_the_blobs_it_is_told_to_and_recent_ones(store: Store):
    kept, dropped, fresh = (_digest(x) for x in (b"kept", b"dropped", b"fresh"))
    for data in (b"kept", b"dropped", b"fresh"):
        store.blobs.write([data], _digest(data))
    _age(store.blobs.path(kept), 7200)
    _age(store.blobs.path(dropped), 7200)
    leftover = store.blobs.root / "tmp" / "abandoned.part"
    leftover.write_bytes(b"half")
    _age(leftover, 7200)
    assert store.blobs.sweep({kept}, grace_seconds=3600) == [dropped]
    assert store.blobs.has(kept) and store.blobs.has(fresh) and not store.blobs.has(dropped)
    assert not leftover.exists()


def test_a_blob_the_client_was_told_it_has_survives_the_next_sweep(store: Store):
    # The client skips uploading what the remote has, then creates the deployment: between
    # the two, the blob is unreferenced and must not be swept.
    old = _digest(b"old archive")
    store.blobs.write([b"old archive"], old)
    _age(store.blobs.path(old), 7200)
    assert store.blobs.missing([old]) == []
    assert store.blobs.sweep(set(), grace_seconds=3600) == []
    assert store.blobs.has(old)


# -- the one sweep: trees and blobs nothing uses (controlplane/trees.py) ---------------------

def _received(trees: Trees, source: Path, tmp_path: Path) -> str:
    """Pack `source` whole and receive it as the control plane does; its tree hash."""
    archive = tmp_path / f"{source.name}.tar.gz"
    with open(archive, "wb") as f:
        write_archive(plan_pack(source), f)
    return trees.receive(archive).tree_hash


def _model(root: Path, files: dict[str, str]) -> Path:
    for relative, content in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(content)
    return root


def _age_all(*roots: Path) -> None:
    for root in roots:
        for path in root.rglob("*"):
            _age(path, 7200)


def _tree_digests(trees: Trees, tree_hash: str) -> set[str]:
    manifest = trees.manifest(tree_hash)
    assert manifest is not None
    index = trees.index / f"{tree_hash}.json"
    return {index.read_text().strip(), *(entry.sha256 for entry in manifest.values())}


def test_the_sweep_keeps_every_blob_a_deployed_tree_needs_and_frees_the_rest(store: Store, tmp_path: Path):
    trees = Trees(store)
    used = _received(trees, _model(tmp_path / "used", {"config.yaml": "a: 1\n", "shared.txt": "both"}), tmp_path)
    unused = _received(trees, _model(tmp_path / "unused", {"config.yaml": "b: 2\n", "shared.txt": "both"}), tmp_path)
    model = store.models.create("hello")
    store.deployments.create(model.id, config={}, archive_sha256=used)
    _age_all(store.blobs.root, trees.index)

    removed = set(trees.sweep(grace_seconds=3600))

    needed = _tree_digests(trees, used)
    assert all(store.blobs.has(digest) for digest in needed)  # the shared content too
    assert removed and removed.isdisjoint(needed)
    assert set(store.blobs.digests()) == needed
    assert trees.manifest(unused) is None and not (trees.root / unused).exists()
    assert (trees.root / used).is_dir()


def test_a_tree_being_pushed_or_deployed_survives_the_sweep(store: Store, tmp_path: Path):
    trees = Trees(store)
    source = _model(tmp_path / "m", {"config.yaml": "a: 1\n", "model.py": "x = 1\n"})
    tree_hash = _received(trees, source, tmp_path)
    everything = set(store.blobs.digests())
    assert trees.sweep(grace_seconds=3600) == []  # uploaded moments ago, not deployed yet

    # An hour later the same directory is pushed again: the client asks which contents the
    # remote lacks (none) and sends the archive; then creates the deployment.
    _age_all(store.blobs.root, trees.index)
    plan = plan_pack(source)
    assert store.blobs.missing([*plan.digests(), *everything]) == []
    assert _received(trees, source, tmp_path) == tree_hash
    assert trees.sweep(grace_seconds=3600) == []

    # A deployment being created from an old upload touches its tree as it reads it.
    _age_all(store.blobs.root, trees.index)
    trees.tree(tree_hash)
    assert trees.sweep(grace_seconds=3600) == []
    assert set(store.blobs.digests()) == everything


def test_a_swept_tree_is_gone_even_though_its_manifest_was_just_read(store: Store, tmp_path: Path):
    # Trees holds recently read manifests in memory; one whose tree the sweep deleted must not
    # come back from there (a replica or build would then look for blobs that are gone).
    trees = Trees(store)
    kept = _received(trees, _model(tmp_path / "kept", {"config.yaml": "a: 1\n"}), tmp_path)
    patched = trees.manifest(kept).with_changes({"model.py": Entry(_digest(b"x = 2\n"), FILE_MODE)})
    store.blobs.write([b"x = 2\n"], _digest(b"x = 2\n"))
    patch_point = trees.keep(patched)
    assert trees.manifest(patch_point) == patched  # kept, and read back
    _age_all(store.blobs.root, trees.index)

    trees.sweep(grace_seconds=3600)

    assert trees.manifest(patch_point) is None and trees.manifest(kept) is None
    with pytest.raises(ApiError, match="no uploaded tree"):
        trees.tree(patch_point)


def test_a_verified_file_is_adopted_whole_under_its_digest_and_a_batch_leaves_nothing_behind(tmp_path: Path):
    # What a patch's staging does with the blobs read_envelope verified: moved in, not copied,
    # fsynced together by the batch before anything names them.
    from truss_cli.controlplane.store.blobs import SyncBatch

    blobs = BlobStore(tmp_path / "blobs")
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    contents = [b"first", b"second" * 1000]
    batch = SyncBatch()
    for data in contents:
        (incoming / _digest(data)).write_bytes(data)
        blobs.adopt(incoming / _digest(data), _digest(data), batch)
    batch.flush()
    for data in contents:
        with blobs.open(_digest(data)) as f:
            assert f.read() == data
        assert blobs.verify(_digest(data))
    assert list(incoming.iterdir()) == []
    assert list((tmp_path / "blobs" / "tmp").iterdir()) == []
    with pytest.raises(StoreError, match="not a sha256"):
        blobs.adopt(incoming / "x", "not-a-digest")
