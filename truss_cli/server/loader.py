"""Finding, constructing and loading the model class, in a background thread.

The import layout follows Truss's image, where the model directory is the working directory
and first on `sys.path` (so `from model.helpers import x` works), and `packages/` plus the
external package directories are appended to `sys.path`. Sibling imports (`import helpers`
from model/model.py) work too, through a finder that is asked only after every other one
failed, so a module in model/ can never shadow a package (not even `model` itself).
"""

from __future__ import annotations

import asyncio
import enum
import importlib
import importlib.machinery
import importlib.util
import inspect
import json
import logging
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

from truss_cli.server import load_errors
from truss_cli.server.contract import ModelContract, ModelDefinitionError, read_contract
from truss_cli.server.replica_config import ReplicaConfig
from truss_cli.server.secrets import Secrets

logger = logging.getLogger("truss.server")


class ModelState(enum.Enum):
    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"


def import_paths(model_dir: Path, config: ReplicaConfig) -> tuple[list[str], list[str]]:
    """(paths to put first on sys.path, paths to append), in order."""
    appended: list[str] = []
    packages = model_dir / config.bundled_packages_dir
    if packages.is_dir():
        appended.append(str(packages))
    appended.extend(str((model_dir / p).resolve()) for p in config.external_package_dirs)
    return [str(model_dir)], appended


class _ModelDirFinder(importlib.machinery.PathFinder):
    """Finds top-level modules in the model module directory, as a last resort."""

    directories: list[str] = []

    @classmethod
    def find_spec(cls, fullname, path=None, target=None):  # type: ignore[override]
        if path is not None:  # a submodule: its package already knows where it lives
            return None
        return importlib.machinery.PathFinder.find_spec(fullname, cls.directories, target)


def install_import_paths(model_dir: Path, config: ReplicaConfig) -> None:
    first, last = import_paths(model_dir, config)
    for path in reversed(first):
        if path not in sys.path:
            sys.path.insert(0, path)
    for path in last:
        if path not in sys.path:
            sys.path.append(path)
    _ModelDirFinder.directories = [str(model_dir / config.model_module_dir)]
    if _ModelDirFinder not in sys.meta_path:
        sys.meta_path.append(_ModelDirFinder)


def model_file(config: ReplicaConfig) -> Path:
    """The model class's file, relative to the model directory."""
    return Path(config.model_module_dir) / config.model_class_filename


def import_model_class(model_dir: Path, config: ReplicaConfig) -> type:
    relative = model_file(config)
    path = model_dir / relative
    if not path.is_file():
        raise ModelDefinitionError(
            f"{relative}: not found in {model_dir} (config.yaml keys model_module_dir and model_class_filename)"
        )
    parts = (*relative.parent.parts, path.stem)
    if path.suffix == ".py" and all(part.isidentifier() for part in parts):
        # Imported as a submodule (`model.model`), so pydantic and pickle can find the module
        # by name and `from model.x import y` inside it refers to the same package.
        module = importlib.import_module(".".join(parts))
    else:
        spec = importlib.util.spec_from_file_location("truss_user_model", path)
        if spec is None or spec.loader is None:
            raise ModelDefinitionError(f"{relative}: not a Python module")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    model_class = getattr(module, config.model_class_name, None)
    if not inspect.isclass(model_class):
        raise ModelDefinitionError(
            f"{relative}: no class named {config.model_class_name!r} (config.yaml key model_class_name)"
        )
    return model_class


def init_kwargs(model_class: type, available: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments `__init__` declares among `available` (all of them for **kwargs)."""
    signature = inspect.signature(model_class)
    parameters = signature.parameters
    if any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
        return dict(available)
    kwargs = {name: value for name, value in available.items() if name in parameters}
    try:
        signature.bind(**kwargs)
    except TypeError as exc:
        raise ModelDefinitionError(
            f"`__init__` cannot be called ({exc}); it may take only these keyword arguments: {', '.join(available)}"
        ) from None
    return kwargs


class ModelHost:
    """Owns the model instance and its loading state; loads once, off the request path."""

    def __init__(self, model_dir: Path, config: ReplicaConfig, environ: Optional[Mapping[str, str]] = None) -> None:
        self.model_dir = model_dir
        self.config = config
        # Relative to the model directory, or absolute (truss run's data view in the cache).
        self.data_dir = model_dir / config.data_dir
        self.environ = os.environ if environ is None else environ
        self.state = ModelState.LOADING
        self.model: Any = None
        self.contract: Optional[ModelContract] = None
        # One line saying why the load failed (`load failed: ...`), logged last by the server,
        # and the traceback trimmed to the model's code (None for a mistake in the model's shape).
        self.failure: Optional[str] = None
        self.failure_traceback: Optional[str] = None
        self.secrets = Secrets(config.secrets, self.environ)

    def unavailable_reason(self) -> str:
        """Why the model cannot answer yet: the message of a 503 from readiness or predict."""
        if self.state is ModelState.FAILED and self.failure is not None:
            return "model failed to load: " + self.failure.removeprefix("load failed: ")
        return "model is not ready yet: load() is still running"

    def start_loading(
        self, loop: asyncio.AbstractEventLoop, on_ready: Callable[[], None], on_failure: Callable[[], None]
    ) -> None:
        """Load on a background thread; then call `on_ready` or `on_failure` on that thread."""
        # Daemon: a SIGTERM during a long load() must not wait for it to finish.
        threading.Thread(
            target=self._load, args=(loop, on_ready, on_failure), name="model-load", daemon=True
        ).start()

    def _load(
        self, loop: asyncio.AbstractEventLoop, on_ready: Callable[[], None], on_failure: Callable[[], None]
    ) -> None:
        started = time.perf_counter()
        try:
            self._load_model(loop)
        except ModelDefinitionError as exc:
            # A mistake in the model's shape: the message is the whole story, no traceback.
            self._fail(f"load failed: {exc}", None, on_failure)
            return
        except BaseException as exc:
            trimmed = load_errors.user_traceback(exc)
            logger.error("Model failed to load\n%s", trimmed)
            self._fail(load_errors.summary(exc, self.model_dir), trimmed, on_failure)
            return
        self.state = ModelState.READY
        logger.info("Model loaded in %.2f s; ready", time.perf_counter() - started)
        on_ready()

    def _fail(self, summary: str, trimmed_traceback: Optional[str], on_failure: Callable[[], None]) -> None:
        self.failure = summary
        self.failure_traceback = trimmed_traceback
        self.state = ModelState.FAILED
        on_failure()

    def _load_model(self, loop: asyncio.AbstractEventLoop) -> None:
        install_import_paths(self.model_dir, self.config)
        missing = self.secrets.missing()
        if missing:
            logger.warning("Secrets declared in config.yaml without a value: %s", ", ".join(missing))
        model_class = import_model_class(self.model_dir, self.config)
        available = {
            # A copy: the model may change its dict, the server's stays as it was.
            "config": json.loads(json.dumps(self.config.model_config)),
            "data_dir": self.data_dir,
            "secrets": self.secrets,
            # Set by a deployment environment on the platform; a plain replica has none.
            "environment": None,
        }
        try:
            model = model_class(**init_kwargs(model_class, available))
            contract = read_contract(model)
        except ModelDefinitionError as exc:  # raised by the two checks, never by model code
            raise ModelDefinitionError(f"{model_file(self.config)}, class {model_class.__name__}: {exc}") from None
        load = getattr(model, "load", None)
        if callable(load):
            logger.info("Running load()")
            if inspect.iscoroutinefunction(load):
                # On the server's loop, so whatever load() creates (clients, queues) is usable
                # from async predict calls.
                asyncio.run_coroutine_threadsafe(load(), loop).result()
            else:
                load()
        self.model, self.contract = model, contract
