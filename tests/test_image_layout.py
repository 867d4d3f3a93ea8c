"""Truss's in-image layout in the build context (no engine needed): model code at /app/model,
data and external_data at /app/data, packages merged at /packages, config.yaml saying so."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import pytest
import yaml

from conftest import edge_settings
from file_server import FileServer, file_server
from truss_cli.errors import UsageError
from truss_cli.image.context import write_build_context
from truss_cli.image.layout import image_path
from truss_cli.image.plan import plan_image

PREDICTING_MODEL = "class Model:\n    def predict(self, x):\n        return x\n"


def write(root: Path, files: dict[str, str]) -> Path:
    for relative, content in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(content)
    return root


def context_files(root: Path) -> set[str]:
    return {path.relative_to(root).as_posix() for path in root.rglob("*") if path.is_file()}


@pytest.fixture
def server() -> Iterator[FileServer]:
    with file_server() as running:
        running.files["/tokenizer.json"] = b'{"vocab": 3}'
        yield running


def test_renamed_directories_land_where_truss_puts_them_and_the_config_says_so(tmp_path: Path) -> None:
    model = write(tmp_path / "m", {
        "config.yaml": "model_module_dir: src\ndata_dir: assets\nbundled_packages_dir: vendored\n"
        "external_package_dirs: [../shared]\n",
        "src/model.py": PREDICTING_MODEL,
        "src/helpers/util.py": "",
        "assets/w.bin": "w",
        "vendored/lib_a/__init__.py": "",
        "notes.txt": "beside config.yaml",
    })
    write(tmp_path / "shared", {"lib_b/__init__.py": ""})
    plan = plan_image(model, edge_settings(), base_image="base:1")
    context = write_build_context(plan, tmp_path / "ctx")
    assert {
        "code/model/model.py", "code/model/helpers/util.py", "code/notes.txt",
        "data/w.bin", "packages/lib_a/__init__.py", "packages/lib_b/__init__.py",
    } <= context_files(context)
    image_config = yaml.safe_load((context / "config.yaml").read_text())
    assert image_config["model_module_dir"] == "model" and image_config["data_dir"] == "data"
    assert image_config["bundled_packages_dir"] == "vendored"  # untouched: the replica config names /packages
    replica = json.loads((context / "replica.json").read_text())
    assert (replica["model_module_dir"], replica["data_dir"]) == ("model", "data")
    assert (replica["bundled_packages_dir"], replica["external_package_dirs"]) == ("/packages", [])
    assert "COPY --chown=10001:10001 data/ /app/data/" in plan.dockerfile
    assert image_path("src/helpers/util.py", plan.config) == "/app/model/helpers/util.py"
    assert image_path("assets/w.bin", plan.config) == "/app/data/w.bin"
    assert image_path("vendored/lib_a/__init__.py", plan.config) == "/packages/lib_a/__init__.py"
    assert image_path("notes.txt", plan.config) == "/app/notes.txt"


def test_a_default_layout_keeps_config_yaml_byte_identical(tmp_path: Path) -> None:
    text = "model_name: same\n# a comment worth keeping\n"
    model = write(tmp_path / "m", {"config.yaml": text, "model/model.py": PREDICTING_MODEL})
    context = write_build_context(plan_image(model, edge_settings(), base_image="base:1"), tmp_path / "ctx")
    assert (context / "config.yaml").read_text() == text


def test_a_directory_that_would_land_on_app_model_is_left_out_with_a_note(tmp_path: Path) -> None:
    model = write(tmp_path / "m", {
        "config.yaml": "model_module_dir: src\n",
        "src/model.py": PREDICTING_MODEL,
        "model/old.py": "stale",
    })
    plan = plan_image(model, edge_settings(), base_image="base:1")
    assert "config.yaml: model/ is left out of the image: Truss's layout puts model_module_dir (src/) at /app/model" in plan.notes
    assert "code/model/old.py" not in context_files(write_build_context(plan, tmp_path / "ctx"))


def test_two_package_dirs_holding_the_same_name_are_refused(tmp_path: Path) -> None:
    model = write(tmp_path / "m", {
        "config.yaml": "external_package_dirs: [../shared]\n",
        "model/model.py": PREDICTING_MODEL,
        "packages/common/__init__.py": "",
    })
    write(tmp_path / "shared", {"common/__init__.py": ""})
    with pytest.raises(UsageError) as caught:
        plan_image(model, edge_settings(), base_image="base:1")
    assert caught.value.message == (
        f"{model / 'config.yaml'}: external_package_dirs: '../shared' and 'packages' both hold 'common'; "
        "an image merges them into /packages, where one would replace the other"
    )


def test_external_data_is_downloaded_on_the_host_into_its_own_layer(tmp_path: Path, server: FileServer) -> None:
    model = write(tmp_path / "m", {
        "config.yaml": f"data_dir: assets\nexternal_data:\n  - {{url: '{server.url('/tokenizer.json')}', "
        "local_data_path: tok/tokenizer.json}\n",
        "model/model.py": PREDICTING_MODEL,
        "assets/own.txt": "mine",
    })
    plan = plan_image(model, edge_settings(), base_image="base:1")
    context = write_build_context(plan, tmp_path / "ctx")
    assert (context / "downloads" / "tok" / "tokenizer.json").read_bytes() == b'{"vocab": 3}'
    # Hard-linked from the cache, not copied (both live under the tests' temporary directory).
    assert (context / "downloads" / "tok" / "tokenizer.json").stat().st_ino == plan.external_data[0].content.path.stat().st_ino
    lines = plan.dockerfile.splitlines()
    assert lines.index("COPY --chown=10001:10001 downloads/ /app/data/") < lines.index("COPY --chown=10001:10001 data/ /app/data/")
    # A second plan asks the server nothing, and names the same image.
    again = plan_image(model, edge_settings(), base_image="base:1")
    assert server.total_requests == 1
    assert again.build_key("base") == plan.build_key("base")


def test_a_download_onto_a_local_data_file_is_refused_before_anything_is_fetched(tmp_path: Path, server: FileServer) -> None:
    model = write(tmp_path / "m", {
        "config.yaml": f"external_data:\n  - {{url: '{server.url('/tokenizer.json')}', local_data_path: tok.json}}\n",
        "model/model.py": PREDICTING_MODEL,
        "data/tok.json": "local",
    })
    with pytest.raises(UsageError, match=r'external_data\[0\]\.local_data_path: "tok.json" collides with data/tok.json'):
        plan_image(model, edge_settings(), base_image="base:1")
    assert server.total_requests == 0
