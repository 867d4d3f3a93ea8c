"""Keys this machine cannot honour (truss_cli/unsupported_keys.py): accepted in config.yaml,
refused with one clear message when a model uses them, before anything is built."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import write_model_dir
from truss_cli.cli.app import app
from truss_cli.config import parse_config
from truss_cli.unsupported_keys import UNSUPPORTED_KEYS, refuse_unsupported_keys

MODEL = "class Model:\n    def predict(self, model_input):\n        return model_input\n"


def _invoke(args: list[str], cache: Path):
    # A cache of its own: the test checks that nothing was prepared in it.
    return CliRunner().invoke(app, args, env={"TRUSS_CACHE_DIR": str(cache)})


@pytest.mark.parametrize(
    "config_yaml, expected",
    [
        ("model_cache:\n  - repo_id: openai/whisper-tiny\n    use_volume: false\n",
         "config.yaml: model_cache: downloading weights at build time is not supported by truss-cli on this "
         "machine (no access to huggingface.co or cloud buckets); put the files under data/ or use external_data"),
        ("hf_cache:\n  - repo_id: openai/whisper-tiny\n",  # Truss's old name
         "config.yaml: model_cache: downloading weights at build time is not supported"),
        ("resources:\n  accelerator: T4\n",
         "config.yaml: resources.accelerator: T4: truss-cli runs models on the CPU; remove it to run here"),
        ("trt_llm:\n  build:\n    base_model: decoder\n",
         "config.yaml: trt_llm: TensorRT-LLM engines need an NVIDIA GPU"),
        ("resources:\n  node_count: 2\n", "config.yaml: resources.node_count: 2: a multi-node deployment"),
        ("runtime:\n  transport:\n    kind: grpc\n",
         "config.yaml: runtime.transport.kind: grpc: truss-cli serves HTTP and WebSocket, not gRPC"),
    ],
    ids=["model_cache", "hf_cache", "accelerator", "trt_llm", "node_count", "grpc"],
)
@pytest.mark.parametrize("command", [["run"], ["image", "build"]], ids=["run", "image-build"])
def test_a_model_using_a_key_this_machine_cannot_honour_is_refused_before_anything_is_built(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command, config_yaml, expected
) -> None:
    model_dir = write_model_dir(tmp_path / "m", MODEL, config_yaml)
    monkeypatch.chdir(tmp_path)  # messages name config.yaml relative to the working directory
    cache = tmp_path / "cache"
    result = _invoke([*command, str(model_dir)], cache)
    assert result.exit_code == 2, result.output
    assert f"Error: m/{expected}" in result.output
    assert "Traceback" not in result.output
    assert not cache.exists(), "something was prepared for a model that cannot run here"


def test_the_check_comes_before_the_model_file_check(tmp_path: Path) -> None:
    # trt_llm models need no model.py in Truss: the reason to refuse is trt_llm, not the missing file.
    model_dir = tmp_path / "m"
    model_dir.mkdir()
    (model_dir / "config.yaml").write_text("trt_llm:\n  build:\n    base_model: encoder\n")
    result = _invoke(["run", str(model_dir)], tmp_path / "cache")
    assert result.exit_code == 2
    assert "trt_llm: TensorRT-LLM" in result.output
    assert "model file is missing" not in result.output


def test_every_key_the_model_uses_is_named_at_once(tmp_path: Path) -> None:
    config_yaml = "resources:\n  accelerator: A10G:2\n  instance_type: L4:4x16\nweights:\n  - source: hf://org/m\n    mount_location: /w\n"
    result = _invoke(["run", str(write_model_dir(tmp_path / "m", MODEL, config_yaml))], tmp_path / "cache")
    assert result.exit_code == 2
    for key in ("weights:", "resources.accelerator: A10G:2:", "resources.instance_type: L4:4x16:"):
        assert key in result.output


def test_build_secrets_matter_only_to_images(tmp_path: Path) -> None:
    config_yaml = "build:\n  secret_to_path_mapping:\n    token: /run/token\n"
    model_dir = write_model_dir(tmp_path / "m", MODEL, config_yaml)
    for command in (["image", "build", str(model_dir)], ["image", "build-context", str(model_dir), str(tmp_path / "ctx")]):
        result = _invoke(command, tmp_path / "cache")
        assert result.exit_code == 2
        assert "build.secret_to_path_mapping: truss-cli does not mount secrets during an image build" in result.output
    # `truss run` runs no build_commands, so there the mapping changes nothing.
    refuse_unsupported_keys(parse_config(config_yaml, model_dir / "config.yaml"), "run")


@pytest.mark.parametrize(
    "config_yaml",
    [
        "model_cache: []\nweights: []\ncache_internal: []\n",
        "resources:\n  accelerator:\n  node_count: 1\n",
        "build:\n  model_server: TrussServer\n",
        "runtime:\n  transport:\n    kind: websocket\n",
    ],
    ids=["empty-lists", "no-accelerator-one-node", "truss-server", "websocket"],
)
def test_keys_set_to_what_runs_here_are_not_refused(tmp_path: Path, config_yaml: str) -> None:
    # `image build-context` goes as far as writing the build context: every check before a build passed.
    model_dir = write_model_dir(tmp_path / "m", MODEL, config_yaml)
    result = _invoke(["image", "build-context", str(model_dir), str(tmp_path / "ctx")], tmp_path / "cache")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "ctx" / "Dockerfile").is_file()


def test_every_unsupported_key_is_a_key_config_yaml_accepts() -> None:
    # A key on the list that the parser did not know would warn as unknown instead of being refused.
    for entry in UNSUPPORTED_KEYS:
        path = entry.key.split(".")
        section = parse_config("").config
        for part in path[:-1]:
            section = getattr(section, part)
        assert path[-1] in type(section).model_fields, entry.key
