"""external_data end to end on this machine: fetched once, shown to the model through data_dir
(its own data files beside the downloads), the model directory left untouched."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Iterator

import pytest
from typer.testing import CliRunner

from conftest import edge_settings
from file_server import FileServer, file_server
from run_helpers import TrussRun, shared_cache
from truss_cli.cli.app import app
from truss_cli.config import load_config
from truss_cli.errors import UsageError
from truss_cli.external_data import check_no_overlap, data_view, fetch_external_data

READS_DATA = '''
from pathlib import Path


class Model:
    def __init__(self, data_dir, **kwargs):
        self._data_dir = Path(data_dir)

    def predict(self, request):
        return {
            name: (self._data_dir / name).read_text()
            for name in ("weights/model.bin", "vocab.txt", "weights/own.txt")
        }
'''


@pytest.fixture
def server() -> Iterator[FileServer]:
    with file_server() as running:
        running.files["/model.bin"] = b"downloaded weights"
        running.files["/vocab.txt"] = b"a b c"
        yield running


def config_for(server: FileServer) -> str:
    return (
        "external_data:\n"
        f"  - url: {server.url('/model.bin')}\n"
        "    local_data_path: weights/model.bin\n"
        f"  - url: {server.url('/vocab.txt')}\n"
        "    local_data_path: vocab.txt\n"
    )


def test_truss_run_gives_the_model_its_data_and_the_downloads_and_a_rerun_downloads_nothing(
    make_model_dir, server: FileServer, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    model_dir = make_model_dir(READS_DATA, config_for(server), files={"data/weights/own.txt": "mine"})
    before = sorted(str(path.relative_to(model_dir)) for path in model_dir.rglob("*"))
    cache = shared_cache(tmp_path_factory)
    logs = []
    for attempt in range(2):
        run = TrussRun(model_dir, cache, tmp_path / f"logs{attempt}")
        try:
            run.wait_for_url()
            assert run.predict({}).json() == {
                "weights/model.bin": "downloaded weights",
                "vocab.txt": "a b c",
                "weights/own.txt": "mine",
            }
        finally:
            run.stop(signal.SIGINT)
        logs.append(run.stderr)
    assert server.total_requests == 2  # one per file, on the first run only
    # A progress bar for each download on the first run; nothing to show on the second.
    assert server.url("/model.bin") in logs[0] and server.url("/vocab.txt") in logs[0]
    assert "external_data[" not in logs[1]
    # Nothing was written into the user's directory.
    assert sorted(str(path.relative_to(model_dir)) for path in model_dir.rglob("*")) == before


def test_a_download_that_fails_stops_truss_run_naming_the_item_and_the_url(
    make_model_dir, server: FileServer, tmp_path: Path
) -> None:
    model_dir = make_model_dir(READS_DATA, f"external_data:\n  - {{url: '{server.url('/gone.bin')}', local_data_path: x}}\n")
    result = CliRunner().invoke(app, ["run", str(model_dir), "--port", "0"], env={"TRUSS_CACHE_DIR": str(tmp_path / "c")})
    assert result.exit_code == 1, result.output
    assert f"external_data[0]: {server.url('/gone.bin')} answered 404 Not Found" in result.output


def test_a_download_onto_a_file_of_the_models_data_dir_is_refused(make_model_dir, server: FileServer) -> None:
    model_dir = make_model_dir(READS_DATA, config_for(server), files={"data/vocab.txt": "local"})
    config = load_config(model_dir).config
    settings = edge_settings()
    files = fetch_external_data(config, settings.cache_dir)
    with pytest.raises(UsageError) as caught:
        data_view(model_dir, config, files, settings.cache_dir)
    assert caught.value.message == (
        f'{model_dir / "config.yaml"}: external_data[1].local_data_path: "vocab.txt" collides with data/vocab.txt '
        "of the model directory (a download never replaces or mixes with the model's own data files)"
    )
    # The same rule where the file list comes from the tree (the image build).
    with pytest.raises(UsageError, match=r"external_data\[0\]\.local_data_path: \"weights/model.bin\" collides with data/weights"):
        check_no_overlap(config, ["weights"], "config.yaml")


def test_the_view_follows_the_users_data_files_and_is_reused_while_they_stay(make_model_dir, server: FileServer) -> None:
    model_dir = make_model_dir(READS_DATA, config_for(server), files={"data/weights/own.txt": "mine", "data/top.txt": "t"})
    config = load_config(model_dir).config
    settings = edge_settings()
    files = fetch_external_data(config, settings.cache_dir)
    view = data_view(model_dir, config, files, settings.cache_dir)
    assert (view / "top.txt").read_text() == "t"
    (model_dir / "data" / "top.txt").write_text("edited")
    assert (view / "top.txt").read_text() == "edited"  # linked, not copied
    assert data_view(model_dir, config, files, settings.cache_dir) == view
    (model_dir / "data" / "weights" / "new.txt").write_text("new")
    newer = data_view(model_dir, config, files, settings.cache_dir)
    assert newer != view and (newer / "weights" / "new.txt").read_text() == "new"
    assert not os.path.islink(newer / "weights")  # a real directory: the download lives in it
