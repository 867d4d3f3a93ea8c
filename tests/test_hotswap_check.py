"""The hot swap's static check (server/control/hotswap.is_safe): when re-importing the model's
modules and swapping the live instance's class is right, and why not otherwise."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from truss_cli.server.control.hotswap import is_safe
from truss_cli.server.replica_config import ReplicaConfig

MODEL = """
import json

TIMEOUT = 3


def helper(x):
    return x


class Model:
    size = 2

    def __init__(self, **kwargs):
        self.cache = {}

    def load(self):
        self.cache["w"] = 1

    def predict(self, model_input):
        return helper(model_input)
"""


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "model.py").write_text(textwrap.dedent(MODEL))
    return tmp_path


def check(root: Path, new_source: str, path: str = "model/model.py", **kwargs) -> tuple:
    return is_safe(root, ReplicaConfig(), {path: textwrap.dedent(new_source).encode()}, kwargs.get("deleted", []), kwargs.get("other"))


@pytest.mark.parametrize(
    "old,new",
    [
        ("return helper(model_input)", "return helper(model_input) * 2"),  # predict's body
        ("    return x\n", "    return [x]\n"),  # a module-level function's body
        ("import json\n", "import json\nimport os\n"),  # a new import
    ],
)
def test_body_and_import_changes_are_safe(root: Path, old: str, new: str) -> None:
    assert check(root, MODEL.replace(old, new)) == (True, "only function bodies of model code changed")


@pytest.mark.parametrize(
    "old,new,reason",
    [
        ('self.cache["w"] = 1', 'self.cache["w"] = 2', "model/model.py: load() changed"),
        ("self.cache = {}", "self.cache = []", "model/model.py: __init__() changed"),
        ("TIMEOUT = 3", "TIMEOUT = 4", "model/model.py: a top-level statement changed (it runs at import)"),
        ("    size = 2", "    size = 3", "model/model.py: a class-level statement of Model changed"),
        ("class Model:", "class Model(dict):", "model/model.py: the bases of Model changed"),
        ("def helper(x):\n", "@staticmethod\ndef helper(x):\n", "model/model.py: a top-level statement changed (it runs at import)"),
        ("    return x\n", "    global TIMEOUT\n    return x\n", "model/model.py: a function uses `global` (module state would be reset)"),
        ("class Model:", "class Other:", "model/model.py: class Model is not defined at the top level"),
    ],
)
def test_changes_that_run_at_import_or_load_need_a_restart(root: Path, old: str, new: str, reason: str) -> None:
    assert check(root, MODEL.replace(old, new)) == (False, reason)


def test_files_other_than_model_code_and_deletes_need_a_restart(root: Path) -> None:
    assert check(root, "x", path="data/weights.txt") == (False, "data/weights.txt is not a Python module of the model code or packages")
    assert check(root, "x = 1", path="setup.py") == (False, "setup.py is not a Python module of the model code or packages")
    assert check(root, MODEL, deleted=["model/old.py"]) == (False, "model/old.py was deleted")
    assert check(root, MODEL, other="the environment changed") == (False, "the environment changed")


def test_a_new_module_in_a_package_is_safe(root: Path) -> None:
    assert check(root, "def f():\n    return 1\n", path="packages/new_helper.py")[0] is True
