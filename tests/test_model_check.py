"""The static check of the model's code that runs before any slow step."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from truss_cli.cli.app import app
from truss_cli.config import parse_config
from truss_cli.errors import UsageError
from truss_cli.model_check import check_model_dir

runner = CliRunner()


def model_dir(tmp_path: Path, source: str, config_text: str = "") -> tuple[Path, object]:
    (tmp_path / "model").mkdir(exist_ok=True)
    (tmp_path / "model" / "model.py").write_text(textwrap.dedent(source))
    (tmp_path / "config.yaml").write_text(config_text)
    return tmp_path, parse_config(config_text).config


def problem(tmp_path: Path, source: str, config_text: str = "") -> UsageError:
    root, config = model_dir(tmp_path, source, config_text)
    with pytest.raises(UsageError) as raised:
        check_model_dir(root, config)
    assert raised.value.exit_code == 2
    return raised.value


@pytest.mark.parametrize(
    "source",
    [
        "class Model:\n    def predict(self, x):\n        return x\n",
        "class Model:\n    async def predict(self, x):\n        return x\n",
        "class Model:\n    predict = staticmethod(lambda x: x)\n",
        # a websocket model has no predict (Truss allows one or the other)
        "class Model:\n    async def websocket(self, ws):\n        await ws.send_text('hi')\n",
        "try:\n    import torch\nexcept ImportError:\n    torch = None\n\nclass Model:\n    if True:\n        def predict(self, x):\n            return x\n",
        # predict may come from elsewhere: the check cannot see it and does not guess.
        "from base import Base\n\nclass Model(Base):\n    pass\n",
        "import abc\n\nclass Model(metaclass=abc.ABCMeta):\n    pass\n",
        "from .impl import Model\n",
        "from .impl import *\n",
        "def make():\n    pass\n\nModel = make()\n",
    ],
)
def test_models_that_may_load_pass(tmp_path: Path, source: str) -> None:
    root, config = model_dir(tmp_path, source)
    check_model_dir(root, config)


def test_a_syntax_error_names_the_file_line_and_shows_the_line(tmp_path: Path) -> None:
    error = problem(tmp_path, "class Model:\n    def predict(self, x)\n        return x\n")
    assert f"{tmp_path / 'model' / 'model.py'}:2:" in error.message
    assert "def predict(self, x)" in error.message


def test_a_missing_class_lists_the_classes_there_are(tmp_path: Path) -> None:
    error = problem(tmp_path, "class Helper:\n    pass\n\nclass MyModel:\n    def predict(self, x):\n        return x\n")
    assert "no class 'Model'" in error.message
    assert "Helper, MyModel" in error.message
    assert "model_class_name" in error.hint


def test_model_class_name_and_file_come_from_the_config(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "serve.py").write_text("class Classifier:\n    def predict(self, x):\n        return x\n")
    config = parse_config("model_module_dir: src\nmodel_class_filename: serve.py\nmodel_class_name: Classifier\n").config
    check_model_dir(tmp_path, config)


def test_a_class_without_predict_is_refused(tmp_path: Path) -> None:
    error = problem(tmp_path, "class Model(object):\n    def load(self):\n        pass\n")
    assert "model.py:1: class Model has no predict() method" in error.message


def test_a_missing_model_file_names_the_settings(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text("model_class_filename: serve.py\n")
    with pytest.raises(UsageError) as raised:
        check_model_dir(tmp_path, parse_config("model_class_filename: serve.py\n").config)
    assert f"{tmp_path / 'model' / 'serve.py'}: the model file is missing" in raised.value.message
    assert "model_class_filename 'serve.py'" in raised.value.hint


def test_image_commands_fail_fast_on_a_broken_model(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    root, _ = model_dir(tmp_path / "m", "class Model:\n    pas s\n")
    out = tmp_path / "ctx"
    result = runner.invoke(app, ["image", "build-context", str(root), str(out)])
    assert result.exit_code == 2
    output = result.stderr
    assert "model.py:2: invalid syntax" in output and "pas s" in output
    assert not out.exists()
