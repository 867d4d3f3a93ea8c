"""Shared test helpers: settings as the CLI builds them, waiting for a server, and writing model directories."""

from __future__ import annotations

import os
import textwrap
import time
from pathlib import Path
from typing import Callable

import httpx
import pytest

from truss_cli.local.interpreters import Interpreter, find_interpreter
from truss_cli.settings import Settings

REPO_ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = REPO_ROOT / "examples"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def edge_settings() -> Settings:
    """Settings as the CLI builds them from this process's environment (the tests' cache)."""
    return Settings.from_environment(os.environ, Path.home())


# Where the CLI looks for Pythons on this machine (its PATH, pyenv's root), as its settings pass them.
HOST_SEARCH = (os.environ.get("PATH", ""), Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv"))


def installed_python(minor: tuple[int, int]) -> Interpreter | None:
    """This machine's Python `minor`, found where the CLI would look."""
    return find_interpreter(minor, *HOST_SEARCH)


def wait_until_ready(url: str, timeout: float = 60.0, is_alive: Callable[[], bool] | None = None) -> None:
    """Poll `url` until it answers 200; fail early if `is_alive()` says the server died."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if is_alive is not None and not is_alive():
            raise AssertionError(f"server exited before {url} was ready")
        try:
            response = httpx.get(url, timeout=2.0)
            if response.status_code == 200:
                return
            last = f"HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            last = type(exc).__name__
        time.sleep(0.05)
    raise AssertionError(f"{url} not ready after {timeout}s ({last})")


def write_model_dir(root: Path, model_py: str, config_yaml: str = "", files: dict[str, str] | None = None) -> Path:
    """A model directory at `root`: config.yaml, model/__init__.py, model/model.py and `files`."""
    (root / "model").mkdir(parents=True)
    (root / "config.yaml").write_text(textwrap.dedent(config_yaml))
    (root / "model" / "__init__.py").write_text("")
    (root / "model" / "model.py").write_text(textwrap.dedent(model_py))
    for relative, content in (files or {}).items():
        target = root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(textwrap.dedent(content))
    return root


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory):
    """Keep the caches tests write (environments, bundles, file digests) out of the user's."""
    path = tmp_path_factory.getbasetemp() / "truss-cache"
    path.mkdir(exist_ok=True)
    previous = os.environ.get("TRUSS_CACHE_DIR")
    os.environ["TRUSS_CACHE_DIR"] = str(path)
    yield path
    if previous is None:
        os.environ.pop("TRUSS_CACHE_DIR", None)
    else:
        os.environ["TRUSS_CACHE_DIR"] = previous


@pytest.fixture
def make_model_dir(tmp_path: Path) -> Callable[..., Path]:
    """Write a model directory: `make_model_dir(model_py, config_yaml="", files={})`."""

    counter = iter(range(1000))

    def make(model_py: str, config_yaml: str = "", files: dict[str, str] | None = None, name: str | None = None) -> Path:
        return write_model_dir(tmp_path / (name or f"model_dir_{next(counter)}"), model_py, config_yaml, files)

    return make
