"""The replica config written from config.yaml (truss_cli.config_to_replica), read back as the
server reads it (truss_cli.server.replica_config)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

from conftest import REPO_ROOT
from truss_cli.config import parse_config
from truss_cli.config_to_replica import cached_replica_config, replica_config_for, with_paths
from truss_cli.server.replica_config import parse_replica_config, read_replica_config

CONFIG = """
model_class_name: Greeter
secrets:
  token: pasted-value
  other: null
runtime:
  predict_concurrency: 3
external_package_dirs: [../shared]
"""


def test_a_local_run_keeps_secret_values_and_the_server_reads_every_field() -> None:
    replica = parse_replica_config(replica_config_for(parse_config(CONFIG).config, secret_values=True).to_json())
    assert replica.model_class_name == "Greeter" and replica.predict_concurrency == 3
    assert replica.secrets == {"token": "pasted-value", "other": None}
    assert replica.external_package_dirs == ("../shared",)
    # The model's `config` argument: the whole validated config, defaults filled in.
    assert replica.model_config["model_class_name"] == "Greeter"
    assert replica.model_config["runtime"]["predict_concurrency"] == 3


def test_an_image_gets_secret_names_only_and_its_own_paths() -> None:
    replica = replica_config_for(parse_config(CONFIG).config, secret_values=False)
    moved = with_paths(replica, external_package_dirs=("/opt/truss/external/0",), data_dir="/app/data")
    text = moved.to_json()
    assert "pasted-value" not in text
    read = parse_replica_config(text)
    assert read.secrets == {"token": None, "other": None}
    assert read.external_package_dirs == ("/opt/truss/external/0",) and read.data_dir == "/app/data"


def test_the_cached_file_is_named_by_content_and_readable_by_its_owner_only(tmp_path) -> None:
    replica = replica_config_for(parse_config(CONFIG).config, secret_values=True)
    path = cached_replica_config(replica, tmp_path)
    assert cached_replica_config(replica, tmp_path) == path
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_replica_config(path) == parse_replica_config(replica.to_json())
    other = replica_config_for(parse_config("model_class_name: Other\n").config, secret_values=True)
    assert cached_replica_config(other, tmp_path) != path


def test_the_module_prints_what_truss_run_gives_the_server(make_model_dir) -> None:
    model_dir = make_model_dir("class Model:\n    def predict(self, x):\n        return x\n", "model_name: printed\n")
    out = subprocess.run(
        [sys.executable, "-m", "truss_cli.config_to_replica", str(model_dir)],
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)}, capture_output=True, text=True, check=True,
    )
    assert json.loads(out.stdout)["model_config"]["model_name"] == "printed"
