"""`truss push` without the printing: check a model directory, send what the remote lacks,
create the deployment (client/waiting.py waits for it).

Local validation comes first (config.yaml, model.py, keys truss-cli cannot honour), so a
typo fails in a second instead of after an upload and a build. The remote is asked which
file contents it lacks (and whether it has the tree's manifest); only those are packed and
sent, so pushing an unchanged directory uploads nothing.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from truss_cli.archive.pack import PackedFile, PackPlan, ProgressCallback, plan_pack, write_archive
from truss_cli.client.api import Api
from truss_cli.config import LoadedConfig, load_config
from truss_cli.errors import TrussError
from truss_cli.model_check import check_model_dir
from truss_cli.settings import Settings
from truss_cli.unsupported_keys import refuse_unsupported_keys

VERSION_BUMPS = ("MAJOR", "MINOR", "PATCH")


@dataclass(frozen=True)
class PreparedPush:
    """A model directory that passed the local checks, and what a push of it would send."""

    model_dir: Path
    model_name: str
    loaded: LoadedConfig
    plan: PackPlan

    @property
    def tree_hash(self) -> str:
        return self.plan.manifest.tree_hash()

    @property
    def manifest_digest(self) -> str:
        """The manifest's own blob: the remote has it once it has seen this tree."""
        return hashlib.sha256(self.plan.manifest.to_json().encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Upload:
    files: list[PackedFile]  # what was sent, largest first
    archive_bytes: int  # 0 when nothing had to be sent
    content_bytes: int


def prepare_push(model_dir: Path, settings: Settings, model_name: str | None = None) -> PreparedPush:
    """Validate the directory as a build would (raises ConfigError / TrussError) and plan the pack."""
    model_dir = model_dir.resolve()
    loaded = load_config(model_dir)
    check_model_dir(model_dir, loaded.config)
    refuse_unsupported_keys(loaded, "image")
    name = model_name or loaded.config.model_name or model_dir.name
    plan = plan_pack(model_dir, cache_dir=settings.cache_dir)
    return PreparedPush(model_dir, name, loaded, plan)


def lacking(api: Api, prepared: PreparedPush) -> tuple[list[str], bool]:
    """The file contents the remote lacks, and whether it lacks the tree (its manifest)."""
    missing = set(api.missing_blobs([*prepared.plan.digests(), prepared.manifest_digest]))
    files = [digest for digest in prepared.plan.digests() if digest in missing]
    return files, prepared.manifest_digest in missing or bool(files)


def upload(
    api: Api,
    prepared: PreparedPush,
    missing: list[str],
    scratch_dir: Path,
    on_packed: ProgressCallback | None = None,
    on_sending: Callable[[int], None] | None = None,
    on_sent: ProgressCallback | None = None,
) -> Upload:
    """Pack the files whose contents are `missing` (and the manifest) and send them.

    `on_packed` counts content bytes packed, `on_sending(total)` announces the archive's
    size, `on_sent` counts its bytes as they leave.
    """
    scratch_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile(dir=scratch_dir, prefix="push-") as archive:
        info = write_archive(prepared.plan, archive, lacking=missing, on_progress=on_packed)
        archive.seek(0)
        if on_sending is not None:
            on_sending(info.size)
        answer = api.upload_archive(archive, info.sha256, info.size, on_progress=on_sent)
    if answer.get("tree_hash") not in (None, prepared.tree_hash):
        raise TrussError(f"the remote stored tree {answer.get('tree_hash')}, expected {prepared.tree_hash}")
    return Upload(prepared.plan.largest_first(missing), info.size, info.content_bytes)
