"""Model trees on the control plane: received archives become blobs, a manifest, and a tree.

    <data_dir>/blobs/         every file content by sha256 (store.blobs), the manifests too
    <data_dir>/manifests/     <tree_hash>.json: which manifest blob a tree hash names
    <data_dir>/trees/<hash>/  the unpacked tree a build reads (rebuilt from blobs when missing)

The tree hash is not the sha256 of the manifest JSON, so the small index file in
manifests/ maps one to the other; the manifest itself is also a blob, like any file.

Manifests are immutable (a tree hash names one), so the last ones read or kept are held in
memory (`MANIFEST_CACHE` of them): a patch reads its base tree's manifest, then the sync reads
it and the new one again. A cached manifest is only returned while the tree's index exists,
so a swept tree is as gone from the cache as from disk. The stored text of the last trees kept
is held too: the next patch's text is spliced from its base's (manifest_text.py).

What is unused goes in `sweep`: a tree no deployment points at whose index was not touched
for the grace period (an upload or a deployment's creation touches it), and the blobs no
kept tree's manifest names, also after their grace period (a push in progress has uploaded
or been told about its blobs moments ago, so they are young).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from truss_cli.archive.format import Limits
from truss_cli.archive.unpack import unpack_archive
from truss_cli.controlplane.errors import ApiError
from truss_cli.controlplane.manifest_text import ManifestText
from truss_cli.controlplane.store import Store, StoreError
from truss_cli.controlplane.store.blobs import SyncBatch
from truss_cli.sync.manifest import LINK_MODE, Entry, Manifest

logger = logging.getLogger("truss.controlplane.trees")
SWEEP_GRACE_SECONDS = 3600.0
# Manifests held in memory: a deployment's running and staged trees and the one being staged
# (a 5,000-file manifest is ~2 MB of Python objects; the control plane's memory goal is 150 MB).
MANIFEST_CACHE = 8
TEXT_CACHE = 4  # stored texts of the last trees kept (a staged tree is the next patch's base)


@dataclass(frozen=True)
class Received:
    tree_hash: str
    files: int  # paths in the tree
    stored: int  # contents this archive added to the blob store


class Trees:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.root = store.data_dir / "trees"
        self.index = store.data_dir / "manifests"
        self._manifests: OrderedDict[str, Manifest] = OrderedDict()  # tree hash -> manifest, least recent first
        self._texts: OrderedDict[str, ManifestText] = OrderedDict()  # the last trees kept: the next patch's base
        self._manifests_lock = threading.Lock()  # routes read trees from worker threads

    def receive(self, archive: Path) -> Received:
        """Unpack a verified archive (ArchiveError when hostile: nothing is kept) and keep its contents."""
        staging = Path(tempfile.mkdtemp(prefix="receive-", dir=self._tmp()))
        try:
            tree = staging / "tree"
            manifest = unpack_archive(archive, tree, Limits(), blobs=self.store.blobs.find)
            stored = 0
            for path, entry in manifest.items():
                if self.store.blobs.has(entry.sha256):
                    continue
                if entry.mode == LINK_MODE:  # a link's content is its target's text
                    self.store.blobs.write([os.readlink(tree / path).encode()], entry.sha256)
                else:
                    with open(tree / path, "rb") as content:
                        self.store.blobs.write(content, entry.sha256)
                stored += 1
            text = ManifestText.of(manifest)
            self._keep_manifest(manifest, None, text)
            self._remember_text(manifest.tree_hash(), text)  # a development deployment's first patch starts here
            target = self.root / manifest.tree_hash()
            if not target.is_dir():
                self.root.mkdir(parents=True, exist_ok=True)
                try:
                    os.rename(tree, target)  # atomic: a tree dir is whole or absent
                except OSError:
                    pass  # another upload of the same tree got there first
            return Received(manifest.tree_hash(), len(manifest), stored)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def keep(self, manifest: Manifest, batch: SyncBatch | None = None, base: str | None = None,
             changes: Mapping[str, Entry | None] | None = None) -> str:
        """Store `manifest` as a tree whose file contents are all in the blob store already
        (a patch point): any later replica or build materialises it with `tree`. -> its hash.
        With `batch`, nothing is fsynced here: the caller flushes the batch before it commits
        anything naming the tree (the manifest blob and the index are in the batch).
        `base` + `changes` (the tree `manifest` was made from, and how): its stored text is
        spliced from the base's when that is at hand (manifest_text.py)."""
        text = None
        if base is not None and changes is not None:
            with self._manifests_lock:
                base_text = self._texts.get(base)
            if base_text is not None:
                text = base_text.with_changes(changes)
        if text is None or len(text) != len(manifest):
            text = ManifestText.of(manifest)
        self._keep_manifest(manifest, batch, text)
        self._remember(manifest.tree_hash(), manifest)
        self._remember_text(manifest.tree_hash(), text)
        return manifest.tree_hash()

    def _keep_manifest(self, manifest: Manifest, batch: SyncBatch | None = None, text: ManifestText | None = None) -> None:
        encoded = (text if text is not None else ManifestText.of(manifest)).encode()  # = manifest.to_json()
        digest = hashlib.sha256(encoded).hexdigest()
        if not self.store.blobs.has(digest):
            self.store.blobs.write([encoded], digest, batch=batch)
        else:
            _touch(self.store.blobs.path(digest))
            if batch is not None:  # it may be a blob of an earlier batch not flushed (a failed patch)
                batch.add(self.store.blobs.path(digest))
        self.index.mkdir(parents=True, exist_ok=True)
        index = self.index / f"{manifest.tree_hash()}.json"
        if not _touch(index):  # touched: a new grace period, as for a new one
            temporary = index.with_suffix(f".{os.getpid()}.{time.monotonic_ns()}.tmp")
            temporary.write_text(digest)
            os.replace(temporary, index)
        if batch is not None:
            batch.add(index)

    def manifest(self, tree_hash: str) -> Manifest | None:
        index = self.index / f"{tree_hash}.json"
        if len(tree_hash) != 64 or not index.is_file():
            return None
        with self._manifests_lock:
            cached = self._manifests.get(tree_hash)
            if cached is not None:
                self._manifests.move_to_end(tree_hash)
                return cached
        with self.store.blobs.open(index.read_text().strip()) as f:
            manifest = Manifest.from_json(f.read())
        self._remember(tree_hash, manifest)
        return manifest

    def _remember_text(self, tree_hash: str, text: ManifestText) -> None:
        with self._manifests_lock:
            self._texts[tree_hash] = text
            self._texts.move_to_end(tree_hash)
            while len(self._texts) > TEXT_CACHE:
                self._texts.popitem(last=False)

    def _remember(self, tree_hash: str, manifest: Manifest) -> None:
        with self._manifests_lock:
            self._manifests[tree_hash] = manifest
            self._manifests.move_to_end(tree_hash)
            while len(self._manifests) > MANIFEST_CACHE:
                self._manifests.popitem(last=False)

    def tree(self, tree_hash: str) -> Path:
        """The unpacked tree, re-materialised from blobs when its directory is gone. Touches
        its index: a deployment about to point at it keeps it from the sweep."""
        if len(tree_hash) == 64:
            _touch(self.index / f"{tree_hash}.json")
        target = self.root / tree_hash
        if target.is_dir():
            return target
        manifest = self.manifest(tree_hash)
        if manifest is None:
            raise ApiError(404, "TREE_NOT_FOUND", f"no uploaded tree {tree_hash!r}", "upload it first: POST /v1/archives")
        staging = Path(tempfile.mkdtemp(prefix="tree-", dir=self._tmp())) / "tree"
        for path, entry in manifest.items():
            destination = staging / path
            destination.parent.mkdir(parents=True, exist_ok=True)
            if entry.mode == LINK_MODE:
                os.symlink(self.store.blobs.path(entry.sha256).read_text(), destination)
                continue
            shutil.copyfile(self.store.blobs.path(entry.sha256), destination)
            os.chmod(destination, entry.mode & 0o777)
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(staging, target)
        except OSError:
            shutil.rmtree(staging.parent, ignore_errors=True)
        return target

    def release(self, tree_hashes: Iterable[str]) -> None:
        """Remove the unpacked directories of these trees when no deployment points at them
        (a deleted deployment's): they are rebuilt from blobs if a later push needs them."""
        referenced = self.store.deployments.referenced_trees()
        for tree_hash in set(tree_hashes) - referenced:
            if tree_hash and len(tree_hash) == 64:
                _remove_tree(self.root / tree_hash)

    def sweep(self, grace_seconds: float = SWEEP_GRACE_SECONDS) -> list[str]:
        """Delete the trees and blobs nothing uses (see the module's docstring); returns the
        blob digests deleted. Safe while pushes and deletes go on (everything they touch is
        young) and after a crash (derived from the rows and the files, nothing counted)."""
        cutoff = time.time() - grace_seconds
        indexes = sorted(self.index.glob("*.json")) if self.index.is_dir() else []
        young = {index.stem for index in indexes if _mtime(index) >= cutoff}
        # Read after the index times: a deployment created meanwhile touched its index first.
        referenced = self.store.deployments.referenced_trees()
        keep: set[str] = set()
        for index in indexes:
            tree_hash = index.stem
            if tree_hash in referenced or tree_hash in young:
                keep |= self._digests(index)
            else:
                index.unlink(missing_ok=True)
                _remove_tree(self.root / tree_hash)
        if self.root.is_dir():
            for leftover in self.root.iterdir():  # a tree whose index is gone
                if leftover.name not in referenced and leftover.name not in young and _mtime(leftover) < cutoff:
                    _remove_tree(leftover)
        removed = self.store.blobs.sweep(keep, grace_seconds)
        if removed:
            logger.info("swept %d unused blobs", len(removed))
        return removed

    def _digests(self, index: Path) -> set[str]:
        """The blobs a tree needs: its manifest's and every file's."""
        try:
            manifest_digest = index.read_text().strip()
            with self.store.blobs.open(manifest_digest) as f:
                manifest = Manifest.from_json(f.read())
        except (OSError, ValueError, StoreError):
            return set()  # being written, or its manifest is gone: nothing it names can be rebuilt
        return {manifest_digest, *(entry.sha256 for entry in manifest.values())}

    def _tmp(self) -> Path:
        path = self.store.data_dir / "tmp"
        path.mkdir(parents=True, exist_ok=True)
        return path



def _touch(path: Path) -> bool:
    """Set `path`'s mtime to now; False when it does not exist."""
    try:
        os.utime(path)
    except FileNotFoundError:
        return False
    return True


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return float("inf")


def _remove_tree(path: Path) -> None:
    """Rename first, so a reader never sees half a tree under its name, then delete."""
    if not path.exists():
        return
    doomed = path.with_name(f".removing-{path.name}-{os.getpid()}-{time.monotonic_ns()}")
    try:
        os.rename(path, doomed)
    except FileNotFoundError:
        return
    shutil.rmtree(doomed, ignore_errors=True)
