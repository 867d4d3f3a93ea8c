"""Model trees on the control plane: received archives become blobs, a manifest, and a tree.

    <data_dir>/blobs/         every file content by sha256 (store.blobs), the manifests too
    <data_dir>/manifests/     <tree_hash>.json: which manifest blob a tree hash names
    <data_dir>/trees/<hash>/  the unpacked tree a build reads (rebuilt from blobs when missing)

The tree hash is not the sha256 of the manifest JSON, so the small index file in
manifests/ maps one to the other; the manifest itself is also a blob, like any file.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from truss_cli.archive.format import Limits
from truss_cli.archive.unpack import unpack_archive
from truss_cli.controlplane.errors import ApiError
from truss_cli.controlplane.store import Store
from truss_cli.sync.manifest import LINK_MODE, Manifest


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

    def _find_blob(self, digest: str) -> Path | None:
        path = self.store.blobs.path(digest)
        return path if path.is_file() else None

    def receive(self, archive: Path) -> Received:
        """Unpack a verified archive (ArchiveError when hostile: nothing is kept) and keep its contents."""
        staging = Path(tempfile.mkdtemp(prefix="receive-", dir=self._tmp()))
        try:
            tree = staging / "tree"
            manifest = unpack_archive(archive, tree, Limits(), blobs=self._find_blob)
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
            self._keep_manifest(manifest)
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

    def _keep_manifest(self, manifest: Manifest) -> None:
        text = manifest.to_json().encode()
        digest = hashlib.sha256(text).hexdigest()
        if not self.store.blobs.has(digest):
            self.store.blobs.write([text], digest)
        self.index.mkdir(parents=True, exist_ok=True)
        index = self.index / f"{manifest.tree_hash()}.json"
        if not index.is_file():
            temporary = index.with_suffix(".tmp")
            temporary.write_text(digest)
            os.replace(temporary, index)

    def manifest(self, tree_hash: str) -> Manifest | None:
        index = self.index / f"{tree_hash}.json"
        if len(tree_hash) != 64 or not index.is_file():
            return None
        with self.store.blobs.open(index.read_text().strip()) as f:
            return Manifest.from_json(f.read())

    def tree(self, tree_hash: str) -> Path:
        """The unpacked tree, re-materialised from blobs when its directory is gone."""
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

    def _tmp(self) -> Path:
        path = self.store.data_dir / "tmp"
        path.mkdir(parents=True, exist_ok=True)
        return path

