"""A model's `external_data`: its files fetched, checked against the model's own data, and
shown to the model inside its data directory.

Every item is downloaded on this machine (`truss_cli.downloads`, cached by URL), for images
as well as for `truss run`, so progress, retries and the cache work the same everywhere and
an image build needs no network. Where the files then appear differs:
- an image gets them in its data layer, at `/app/data/<local_data_path>`;
- `truss run` never writes into the user's model directory, so the model gets a *data view*
  instead: a directory in the cache mirroring the model's data directory with symbolic links
  (edits to the user's files show through) plus a link to each download. The server is told
  to pass that directory as `data_dir`.

A download and a file of the model's own data directory at the same path are refused, not
ranked: Truss's documentation says the download wins while its image build lets the local
file win, so any choice would surprise someone. Refusing keeps the two runs identical.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Optional

from truss_cli.config import CONFIG_FILENAME, TrussConfig
from truss_cli.downloads import CachedFile, RetryPolicy, fetch
from truss_cli.errors import UsageError
from truss_cli.paths import atomic_directory


@dataclass(frozen=True)
class ExternalFile:
    label: str  # `external_data[2]`, as errors and progress name it
    local_data_path: str  # posix, relative to the data directory
    content: CachedFile


@dataclass(frozen=True)
class DownloadProgress:
    label: str
    url: str
    received: int
    total: Optional[int]  # None when the server did not say


DownloadListener = Callable[[DownloadProgress], None]


def fetch_external_data(
    config: TrussConfig,
    cache_dir: Path,
    on_progress: DownloadListener = lambda progress: None,
    retry: RetryPolicy = RetryPolicy(),
) -> list[ExternalFile]:
    """Every `external_data` item's content, downloading only what the cache lacks.

    Raises DownloadError naming the item and the URL. `on_progress` hears only real
    downloads, so a run with everything cached shows nothing.
    """
    found = []
    for index, item in enumerate(config.external_data):
        label = f"external_data[{index}]"

        def report(received: int, total: Optional[int], label: str = label, url: str = item.url) -> None:
            on_progress(DownloadProgress(label, url, received, total))

        content = fetch(item.url, cache_dir, label, on_progress=report, retry=retry)
        found.append(ExternalFile(label, item.local_data_path, content))
    return found


def check_no_overlap(config: TrussConfig, local_data_paths: Iterable[str], where: Path | str) -> None:
    """Refuse a download whose path is, holds, or is held by a file of the model's data dir.

    `local_data_paths`: the model's own data files, posix, relative to the data directory.
    """
    local = sorted(local_data_paths)
    for index, item in enumerate(config.external_data):
        target = item.local_data_path
        for path in local:
            if path == target or path.startswith(target + "/") or target.startswith(path + "/"):
                raise overlap_error(config, index, path, where)


def overlap_error(config: TrussConfig, index: int, local_path: str, where: Path | str) -> UsageError:
    data_dir = config.data_dir.rstrip("/")
    target = config.external_data[index].local_data_path
    return UsageError(
        f"{where}: external_data[{index}].local_data_path: {json.dumps(target)} collides with "
        f"{data_dir}/{local_path} of the model directory (a download never replaces or mixes with the "
        "model's own data files)",
        hint=f"download to another local_data_path, or remove {data_dir}/{local_path}",
    )


def data_view(model_dir: Path, config: TrussConfig, files: list[ExternalFile], cache_dir: Path) -> Path:
    """A directory showing `model_dir`'s data directory plus the downloads, for `truss run`.

    Made of symbolic links, under `<cache>/data-views/`, named by what it links to: an
    unchanged model reuses it, a changed one gets a new one, and concurrent runs never
    write into a view another run uses.
    """
    where = model_dir / CONFIG_FILENAME
    downloads = {item.local_data_path: item.content.path for item in files}
    indexes = {item.local_data_path: index for index, item in enumerate(config.external_data)}
    links: list[tuple[str, str]] = []

    def mirror(directory: Path, prefix: str) -> None:
        # Link each entry whole unless a download lands inside it; then mirror it one level down.
        for name in sorted(os.listdir(directory)):
            relative = prefix + name
            source = directory / name
            if relative in downloads:
                raise overlap_error(config, indexes[relative], relative, where)
            inside = [path for path in downloads if path.startswith(relative + "/")]
            if not inside:
                links.append((relative, os.path.abspath(source)))
            elif source.is_dir():
                mirror(source, relative + "/")
            else:
                raise overlap_error(config, indexes[inside[0]], relative, where)

    data_dir = model_dir / config.data_dir
    if data_dir.is_dir():
        mirror(data_dir, "")
    links.extend((path, str(target)) for path, target in sorted(downloads.items()))
    key = hashlib.sha256(json.dumps(links).encode()).hexdigest()[:24]
    view = cache_dir / "data-views" / key
    if view.is_dir():
        return view
    try:
        with atomic_directory(view) as staging:
            for relative, target in links:
                link = staging / relative
                link.parent.mkdir(parents=True, exist_ok=True)
                os.symlink(target, link)
    except OSError:
        if not view.is_dir():  # not another run finishing the same view first
            raise
    return view
