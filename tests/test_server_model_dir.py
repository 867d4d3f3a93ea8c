"""What the model class gets from its directory: kwargs, data, secrets and importable code."""

from __future__ import annotations

from test_server_harness import start_ready

KWARGS = """
from model.helpers import greeting  # Truss style: the model directory is importable as `model`


class Model:
    def __init__(self, config, data_dir):
        self.name = config["model_name"]
        self.metadata = config["model_metadata"]
        self.data = (data_dir / "words.txt").read_text().split()

    def predict(self, model_input):
        return {"name": self.name, "metadata": self.metadata, "data": self.data, "greeting": greeting()}


class Everything:
    def __init__(self, **kwargs):
        self.kwargs = kwargs

    def predict(self, model_input):
        return {name: repr(value) if name != "environment" else value for name, value in self.kwargs.items()}
"""

KWARGS_FILES = {"data/words.txt": "alpha beta\n", "model/helpers.py": "def greeting():\n    return 'hi'\n"}


def test_init_receives_only_the_declared_kwargs(tmp_path):
    config = "model_name: kw\nmodel_metadata:\n  owner: team-a\n"
    with start_ready(tmp_path / "named", KWARGS, config, KWARGS_FILES) as server:
        result = server.predict({}).json()
    assert result == {"name": "kw", "metadata": {"owner": "team-a"}, "data": ["alpha", "beta"], "greeting": "hi"}


def test_init_with_var_kwargs_receives_all_of_them(tmp_path):
    with start_ready(tmp_path / "all", KWARGS, "model_class_name: Everything\n", KWARGS_FILES) as server:
        result = server.predict({}).json()
    assert set(result) == {"config", "data_dir", "secrets", "environment"}
    assert result["environment"] is None
    assert "words.txt" not in result["data_dir"] and result["data_dir"].endswith("data')")


IMPORTS = """
import sibling                 # a module next to this file
from src.nested import answer  # the module directory as a package
from bundled import VALUE      # packages/
from shared_lib import SHARED  # an external package directory


class Echo:
    def predict(self, model_input):
        return [sibling.NAME, answer(), VALUE, SHARED]
"""


def test_custom_module_layout_packages_and_external_dirs_are_importable(tmp_path):
    (tmp_path / "ext" / "shared_lib").mkdir(parents=True)
    (tmp_path / "ext" / "shared_lib" / "__init__.py").write_text("SHARED = 'external'\n")
    config = """
        model_module_dir: src
        model_class_filename: serve.py
        model_class_name: Echo
        external_package_dirs:
          - ../ext
    """
    files = {
        "src/serve.py": IMPORTS,
        "src/sibling.py": "NAME = 'sibling'\n",
        "src/nested.py": "def answer():\n    return 42\n",
        "packages/bundled/__init__.py": "VALUE = 'bundled'\n",
    }
    with start_ready(tmp_path / "layout", "raise SystemExit('model/model.py must not be used')\n", config, files) as server:
        assert server.predict({}).json() == ["sibling", 42, "bundled", "external"]


SECRETS = """
import logging


class Model:
    def __init__(self, secrets, **kwargs):
        self.secrets = secrets
        print("secrets given to the model:", secrets)  # must show names, never values
        logging.getLogger("model").info("kwargs %r", kwargs)

    def predict(self, name):
        try:
            return {"value": self.secrets[name]}
        except KeyError as exc:
            return {"error": str(exc)}
"""


def test_secrets_come_from_env_and_dir_and_never_reach_the_log(tmp_path):
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir()
    (secrets_dir / "from_file").write_text("file-value-5e2a\n")
    (secrets_dir / "both").write_text("file-wins-77c0")
    config = "secrets:\n  api_key: null\n  from_file: null\n  both: null\n  unset: null\n"
    env = {
        "TRUSS_SECRET_api_key": "env-value-9b3f",
        "TRUSS_SECRET_both": "env-loses-1d4e",
        "TRUSS_SECRET_undeclared": "never-readable",
        "TRUSS_SECRETS_DIR": str(secrets_dir),
    }
    with start_ready(tmp_path / "m", SECRETS, config, env=env) as server:
        assert server.predict("api_key").json() == {"value": "env-value-9b3f"}
        assert server.predict("from_file").json() == {"value": "file-value-5e2a"}
        assert server.predict("both").json() == {"value": "file-wins-77c0"}
        assert "TRUSS_SECRET_unset" in server.predict("unset").json()["error"]
        assert "not declared" in server.predict("undeclared").json()["error"]
    log = server.log()
    assert "api_key" in log  # the model printed the names...
    for value in ("env-value-9b3f", "file-value-5e2a", "file-wins-77c0", "env-loses-1d4e", "never-readable"):
        assert value not in log  # ...and no value
    assert "without a value: unset" in log
