"""A development replica's failure tracebacks name the tree's files relative to the tree root
(docs/live-reload.md, C1): the replica runs a private copy whose absolute paths mean nothing
on the user's machine, and the CLI maps `File "model/model.py"` back to the user's own file.
Files outside the tree (the standard library) keep their absolute paths."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

from dev_replica_support import DevReplica

SOURCE = """
import os


class Model:
    def __init__(self, **kwargs):
        self.loaded_by = None

    def load(self):
        self.loaded_by = os.getpid()

    def predict(self, model_input):
        return {"version": 1}
"""


def _model_dir(tmp_path: Path) -> Path:
    root = tmp_path / "private-copy" / "model_dir"
    (root / "model").mkdir(parents=True)
    (root / "config.yaml").write_text("model_name: dev\n")
    (root / "model" / "__init__.py").write_text("")
    (root / "model" / "model.py").write_text(textwrap.dedent(SOURCE))
    return root


def _absolute_names_of(root: Path) -> list:
    return [str(root), str(root.resolve())]


def test_a_load_failure_names_the_model_file_relative_to_the_tree_and_the_stdlib_absolute(tmp_path: Path) -> None:
    root = _model_dir(tmp_path)
    source = (root / "model" / "model.py").read_text()
    with DevReplica(root) as replica:
        failing = source.replace("self.loaded_by = os.getpid()", "import json\n        json.loads('{')")
        answer = replica.patch({"model/model.py": failing})
        assert answer.status_code == 422, answer.text
        detail = answer.json()["detail"]
        assert detail["phase"] == "load"
        trace = detail["traceback"]
        assert 'File "model/model.py", line 11, in load' in trace, trace
        assert "json.loads('{')" in trace  # the source line is still shown
        assert not any(name in trace for name in _absolute_names_of(root)), trace
        assert f'File "{os.path.dirname(json.__file__)}' in trace  # not under the tree: absolute
        assert "(model/model.py, line 11)" in detail["summary"]
        assert replica.predict().json()["version"] == 1


def test_an_import_failure_during_a_hot_swap_names_the_model_file_relative_to_the_tree(tmp_path: Path) -> None:
    root = _model_dir(tmp_path)
    source = (root / "model" / "model.py").read_text()
    with DevReplica(root) as replica:
        answer = replica.patch({"model/model.py": "from model.helper import VALUE\n" + source,
                                "model/helper.py": "VALUE = 1 / 0\n"})
        assert answer.status_code == 422, answer.text
        trace = answer.json()["detail"]["traceback"]
        assert 'File "model/model.py", line 1' in trace and 'File "model/helper.py", line 1' in trace, trace
        assert "ZeroDivisionError" in trace
        assert not any(name in trace for name in _absolute_names_of(root)), trace
        assert replica.predict().json()["version"] == 1
