"""A model directory made ready to run on this machine: a Python for it, its cached
environment, the server bundle and the replica config the server reads. What `truss run` and a process runtime both do before
they start replicas (`truss_cli.local.replica`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from truss_cli.config import TrussConfig
from truss_cli.config_to_replica import cached_replica_config, replica_config_for
from truss_cli.errors import TrussError
from truss_cli.local.environments import Environment, ensure_environment, spec_for_model
from truss_cli.local.interpreters import NoInterpreterError, select_interpreter
from truss_cli.local.replica import ReplicaSpec
from truss_cli.server_bundle import cached_server_bundle
from truss_cli.settings import Settings


@dataclass
class PreparedModel:
    model_dir: Path
    config: TrussConfig
    environment: Environment
    bundle_dir: Path
    replica_config: Path

    def replica_spec(self, settings: Settings, status_file: Path, **options: Any) -> ReplicaSpec:
        """A spec for one replica of this model; `options` are ReplicaSpec's (host, port, ...)."""
        return ReplicaSpec(
            python=self.environment.python,
            bundle_dir=self.bundle_dir,
            model_dir=self.model_dir,
            replica_config=self.replica_config,
            status_file=status_file,
            environ=settings.environ,
            config_variables=self.config.environment_variables,
            **options,
        )


def prepare_model(
    model_dir: Path,
    config: TrussConfig,
    settings: Settings,
    on_progress: Callable[[str], None] = lambda step: None,
    on_note: Callable[[str], None] = lambda note: None,
) -> PreparedModel:
    """Find a Python for `config`, build (or reuse) its environment, and write the bundle.

    `on_note` hears what the user should know (a Python other than the one asked for);
    `on_progress` the current step of an environment build.
    """
    try:
        selection = select_interpreter(
            config.python_minor,
            search_path=settings.environ.get("PATH", ""),
            pyenv_root=_pyenv_root(settings),
        )
    except NoInterpreterError as exc:
        raise TrussError(str(exc), hint="install one (e.g. with pyenv), or use Docker: truss image run") from None
    warning = selection.warning()
    if warning:
        on_note(warning)
    spec = spec_for_model(model_dir, config, selection.interpreter)
    environment = ensure_environment(spec, settings.cache_dir, environ=settings.environ, on_progress=on_progress)
    bundle = cached_server_bundle(settings.cache_dir)
    # The values under `secrets:` go to a local server as they did before: the file stays in
    # this machine's cache, readable by its owner only.
    replica_config = cached_replica_config(replica_config_for(config, secret_values=True), settings.cache_dir)
    return PreparedModel(model_dir, config, environment, bundle, replica_config)


def _pyenv_root(settings: Settings) -> Path:
    explicit = settings.environ.get("PYENV_ROOT")
    return Path(explicit) if explicit else settings.home / ".pyenv"
