"""A config's `docker_server`, turned into what the replica in front of it is started with.

The one place the CLI side reads `docker_server` for running it: `truss run` (through
`local/prepare.py`) and images (`image/plan.py`) both call it, so both start the custom
server with the same options. The replica (`truss_cli/server/custom/`) never reads the config.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Optional

from truss_cli.config import CONFIG_FILENAME, TrussConfig, secret_has_value
from truss_cli.errors import UsageError
from truss_cli.server.custom.options import CustomServerOptions, secret_name_problem
from truss_cli.server.protocol import SECRET_ENV_PREFIX


def custom_server_options(model_dir: Path, config: TrussConfig) -> Optional[CustomServerOptions]:
    """The custom server's options, or None for a model with a Model class."""
    server = config.docker_server
    if server is None:
        return None
    if not (server.start_command or "").strip():
        # Truss then starts the base image's own entry point and leaves routing to its
        # platform; here the replica must start the server itself to serve the routes.
        raise UsageError(
            f"{Path(model_dir) / CONFIG_FILENAME}: docker_server.start_command: required by truss-cli, also with "
            "no_build: the replica starts the custom server itself to serve Truss's routes in front of it",
            hint="set start_command to the command the base image would run (its ENTRYPOINT and CMD)",
        )
    for name in config.secrets:
        problem = secret_name_problem(name)
        if problem:
            raise UsageError(
                f"{Path(model_dir) / CONFIG_FILENAME}: secrets: {name!r}: {problem}",
                hint="name the secret as the secret manager does, e.g. hf_access_token",
            )
    return CustomServerOptions(
        start_command=server.start_command,
        server_port=server.server_port,
        predict_endpoint=server.predict_endpoint,
        readiness_endpoint=server.readiness_endpoint,
        liveness_endpoint=server.liveness_endpoint,
        secrets=tuple(config.secrets),
    )


def secrets_from_config(config: TrussConfig, environ: Mapping[str, str]) -> dict:
    """Secret values written in config.yaml, as TRUSS_SECRET_<name> variables for the custom
    server's replica, for those the caller's environment does not supply. (The model server
    falls back to these values itself; the custom server replica reads only its environment
    and turns what it finds into the files the custom server reads.)"""
    return {
        f"{SECRET_ENV_PREFIX}{name}": value
        for name, value in config.secrets.items()
        if secret_has_value(value) and f"{SECRET_ENV_PREFIX}{name}" not in environ
    }
