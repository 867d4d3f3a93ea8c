"""`python -m truss_cli.server MODEL_DIR [--host H] [--port P] ...`: serve one model directory.

The options a supervisor sets (status file, replica id, stay-up mode) can come from the
environment variables `protocol.py` names, so an image's fixed CMD can be steered per
container; an argument wins over its variable.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Mapping, Optional

from truss_cli.server import protocol


def parse_arguments(argv: Optional[list], environ: Mapping[str, str]) -> argparse.Namespace:
    parser = build_parser(environ)
    return check_arguments(parser, parser.parse_args(argv))


def build_parser(
    environ: Mapping[str, str],
    prog: str = "python -m truss_cli.server",
    description: str = "Serve the model in MODEL_DIR over HTTP (Truss-compatible routes).",
) -> argparse.ArgumentParser:
    """The server's arguments; the development replica (server/control) adds its own to them."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("model_dir", metavar="MODEL_DIR", help="the model directory (the working directory of model code)")
    parser.add_argument(
        "--replica-config",
        type=Path,
        metavar="PATH",
        default=environ.get(protocol.REPLICA_CONFIG_ENV) or None,
        help="the replica config (JSON) written from the model's config.yaml by `truss run` or an image "
        f"build (env: {protocol.REPLICA_CONFIG_ENV})",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    parser.add_argument(
        "--port",
        type=int,
        default=protocol.DEFAULT_SERVER_PORT,
        help=f"port to listen on; 0 picks a free one, reported in the status (default: {protocol.DEFAULT_SERVER_PORT})",
    )
    parser.add_argument(
        "--status-file",
        type=Path,
        metavar="PATH",
        default=environ.get(protocol.STATUS_FILE_ENV) or None,
        help=f"write the replica's status (JSON) here on every phase change (env: {protocol.STATUS_FILE_ENV})",
    )
    parser.add_argument(
        "--replica-id",
        metavar="ID",
        default=environ.get(protocol.REPLICA_ID_ENV) or None,
        help=f"id repeated in the status and in every response's {protocol.REPLICA_ID_HEADER} header "
        f"(env: {protocol.REPLICA_ID_ENV})",
    )
    parser.add_argument(
        "--stay-up-on-load-failure",
        action="store_true",
        default=environ.get(protocol.STAY_UP_ON_LOAD_FAILURE_ENV) == "1",
        help="when the model fails to load, keep serving and report the failure instead of exiting "
        f"(env: {protocol.STAY_UP_ON_LOAD_FAILURE_ENV}=1)",
    )
    return parser


def check_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.Namespace:
    if not 0 <= args.port <= 65535:
        parser.error(f"--port must be between 0 and 65535, not {args.port}")
    if args.replica_config is None:
        parser.error(
            f"no replica config: give --replica-config PATH or set {protocol.REPLICA_CONFIG_ENV} "
            "(`truss run` and images do; the server does not read config.yaml itself)"
        )
    return args


def main(argv: Optional[list] = None) -> int:
    args = parse_arguments(argv, os.environ)
    from truss_cli.server.serve import serve  # after parsing, so --help is instant

    return serve(
        args.model_dir,
        args.replica_config,
        args.host,
        args.port,
        status_file=args.status_file,
        replica_id=args.replica_id,
        stay_up_on_load_failure=args.stay_up_on_load_failure,
    )


if __name__ == "__main__":
    sys.exit(main())
