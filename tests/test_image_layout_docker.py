"""Truss's in-image layout on a real engine: a model whose directories have other names is
served from /app/model, reads its data and host-downloaded external_data at /app/data, imports
from /packages, and its build_commands see all of them."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Iterator

import docker
import httpx
import pytest

from conftest import edge_settings
from docker_support import Cleanup, base_image, engine, unique_name
from file_server import file_server
from truss_cli.image.build import build_image
from truss_cli.image.container import start_container, wait_until_ready
from truss_cli.image.plan import plan_image

pytestmark = pytest.mark.docker

MODEL = '''
import os
import pathlib

import lib_bundled
import lib_shared
from model.helpers import HELPED


class Model:
    def __init__(self, data_dir, **kwargs):
        self._data_dir = pathlib.Path(data_dir)

    def predict(self, request):
        return {
            "data_dir": str(self._data_dir),
            "own": (self._data_dir / "own.txt").read_text(),
            "downloaded": (self._data_dir / "tok" / "tokenizer.json").read_text(),
            "relative": pathlib.Path("data/tok/tokenizer.json").read_text(),
            "packages": [lib_bundled.NAME, lib_shared.NAME],
            "helper": HELPED,
            "cwd": os.getcwd(),
            "built": pathlib.Path("/tmp/built.txt").read_text().split(),
        }
'''

BUILD_COMMAND = (
    # config.yaml is not there yet: as in Truss, it is the last layer, after build_commands.
    "cat /app/data/tok/tokenizer.json /app/data/own.txt > /tmp/seen"
    " && ls /app/model/model.py /packages/lib_bundled /packages/lib_shared"
    " && echo $(pwd) $(cat /tmp/seen) > /tmp/built.txt"
)


@pytest.fixture(scope="module")
def client() -> docker.APIClient:
    return engine()


@pytest.fixture(scope="module")
def cleanup(client: docker.APIClient) -> Iterator[Cleanup]:
    tracker = Cleanup(client)
    yield tracker
    tracker.run()


def write(root: Path, files: dict[str, str]) -> None:
    for relative, content in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(textwrap.dedent(content))


def test_a_truss_layout_image_with_renamed_dirs_and_external_data(
    client: docker.APIClient, cleanup: Cleanup, tmp_path: Path
) -> None:
    name = cleanup.model(unique_name("truss-test-layout"))
    model_dir = tmp_path / "layout"
    with file_server() as server:
        server.files["/tokenizer.json"] = b"tokens"
        write(model_dir, {
            "config.yaml": f"""\
                model_name: {name}
                model_module_dir: src
                data_dir: assets
                bundled_packages_dir: vendored
                external_package_dirs: [../shared]
                external_data:
                  - url: {server.url('/tokenizer.json')}
                    local_data_path: tok/tokenizer.json
                build_commands:
                  - "{BUILD_COMMAND}"
                """,
            "src/__init__.py": "",
            "src/model.py": MODEL,
            "src/helpers.py": "HELPED = 'from /app/model'\n",
            "assets/own.txt": "own data",
            "vendored/lib_bundled/__init__.py": "NAME = 'bundled'\n",
        })
        write(tmp_path / "shared", {"lib_shared/__init__.py": "NAME = 'shared'\n"})
        plan = plan_image(model_dir, edge_settings(), base_image=base_image(client))
    # The build runs after the file server is gone: the download happened on this machine.
    built = build_image(client, plan, edge_settings())
    container = start_container(client, built.tag, plan.model_name, 0)
    try:
        wait_until_ready(container, timeout=120)
        response = httpx.post(f"{container.url}/v1/models/model:predict", json={}, timeout=30)
        assert response.status_code == 200, container.log_text()
        assert response.json() == {
            "data_dir": "/app/data",
            "own": "own data",
            "downloaded": "tokens",
            "relative": "tokens",  # as in Truss's image: cwd /app, data at data/
            "packages": ["bundled", "shared"],
            "helper": "from /app/model",
            "cwd": "/app",
            "built": ["/app", "tokensown", "data"],  # pwd, then both files as the build saw them
        }
    finally:
        container.remove()
