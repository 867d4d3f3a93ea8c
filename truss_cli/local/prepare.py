"""A model directory made ready to run on this machine: a Python for it, its cached
environment, the server bundle, the replica config the server reads and, with `external_data`, its
downloads and data view. What `truss run` and a process runtime both do before
they start replicas (`truss_cli.local.replica`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from truss_cli.config import TrussConfig
from truss_cli.custom_server import custom_server_options, secrets_from_config
from truss_cli.config_to_replica import cached_replica_config, replica_config_for, with_paths
from truss_cli.errors import TrussError
from truss_cli.external_data import DownloadListener, data_view, fetch_external_data
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
    # With external_data: the directory the model gets as data_dir (external_data.data_view),
    # named in the replica config.
    data_dir: Optional[Path] = None

    def replica_spec(self, settings: Settings, status_file: Path, **options: Any) -> ReplicaSpec:
        """A spec for one replica of this model; `options` are ReplicaSpec's (host, port, ...)."""
        variables = dict(self.config.environment_variables)
        custom_server = custom_server_options(self.model_dir, self.config)
        if custom_server is not None:
            variables.update(secrets_from_config(self.config, settings.environ))
        return ReplicaSpec(
            python=self.environment.python,
            bundle_dir=self.bundle_dir,
            model_dir=self.model_dir,
            replica_config=self.replica_config,
            status_file=status_file,
            environ=settings.environ,
            config_variables=variables,
            custom_server=custom_server,
            **options,
        )


def prepare_model(
    model_dir: Path,
    config: TrussConfig,
    settings: Settings,
    on_progress: Callable[[str], None] = lambda step: None,
    on_note: Callable[[str], None] = lambda note: None,
    on_download: DownloadListener = lambda progress: None,
) -> PreparedModel:
    """Find a Python for `config`, build (or reuse) its environment, and write the bundle.

    `on_note` hears what the user should know (a Python other than the one asked for);
    `on_progress` the current step of an environment build; `on_download` the bytes of each
    external_data file being downloaded (cached ones are not).
    """
    # Downloads first: a wrong URL fails in seconds, before minutes of installing.
    data_dir = None
    if config.external_data:
        files = fetch_external_data(config, settings.cache_dir, on_progress=on_download)
        data_dir = data_view(model_dir, config, files, settings.cache_dir)
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
    if config.docker_server is not None:
        # The replica in front of a custom server needs only the standard library: the
        # environment holds the custom server's own requirements, and nothing of ours.
        spec = dataclasses.replace(spec, server_requirements=())
        custom_server_options(model_dir, config)  # a config it cannot start fails before the build
    environment = ensure_environment(spec, settings.cache_dir, environ=settings.environ, on_progress=on_progress)
    bundle = cached_server_bundle(settings.cache_dir)
    # The values under `secrets:` go to a local server as they did before: the file stays in
    # this machine's cache, readable by its owner only. With external_data the model's data_dir
    # is the data view (the model's files plus the downloads), named in the replica config.
    replica = replica_config_for(config, secret_values=True)
    if data_dir is not None:
        replica = with_paths(replica, data_dir=str(data_dir))
    replica_config = cached_replica_config(replica, settings.cache_dir)
    return PreparedModel(model_dir, config, environment, bundle, replica_config, data_dir)


def _pyenv_root(settings: Settings) -> Path:
    explicit = settings.environ.get("PYENV_ROOT")
    return Path(explicit) if explicit else settings.home / ".pyenv"
