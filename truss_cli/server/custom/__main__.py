"""`python -m truss_cli.server.custom --start-command CMD --server-port N ... [--host H] [--port P]`.

Like the model server's entry point (`truss_cli/server/__main__.py`), the options a
supervisor sets (status file, replica id, stay-up mode) can come from the environment
variables `protocol.py` names, so an image's fixed CMD is steered per container.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Mapping, Optional

from truss_cli.server import protocol
from truss_cli.server.custom.options import CustomServerOptions
from truss_cli.server.custom.secret_files import SECRETS_PATH_IN_IMAGE


def parse_arguments(argv: Optional[list], environ: Mapping[str, str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m truss_cli.server.custom",
        description="Start a custom HTTP server and serve Truss's routes in front of it.",
    )
    CustomServerOptions.add_arguments(parser)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    parser.add_argument(
        "--port", type=int, default=protocol.DEFAULT_SERVER_PORT,
        help=f"port to listen on; 0 picks a free one, reported in the status (default: {protocol.DEFAULT_SERVER_PORT})",
    )
    parser.add_argument(
        "--secrets-path", type=Path, metavar="DIR", default=None,
        help="write the custom server's secret files into DIR, created if missing (an image's CMD names "
        f"{SECRETS_PATH_IN_IMAGE}, as Truss has them); default: a new private temporary directory",
    )
    parser.add_argument(
        "--status-file", type=Path, metavar="PATH", default=environ.get(protocol.STATUS_FILE_ENV) or None,
        help=f"write the replica's status (JSON) here on every phase change (env: {protocol.STATUS_FILE_ENV})",
    )
    parser.add_argument(
        "--replica-id", metavar="ID", default=environ.get(protocol.REPLICA_ID_ENV) or None,
        help=f"id repeated in the status and every response's {protocol.REPLICA_ID_HEADER} header (env: {protocol.REPLICA_ID_ENV})",
    )
    parser.add_argument(
        "--stay-up-on-load-failure", action="store_true",
        default=environ.get(protocol.STAY_UP_ON_LOAD_FAILURE_ENV) == "1",
        help=f"when the custom server exits, keep serving and report it (env: {protocol.STAY_UP_ON_LOAD_FAILURE_ENV}=1)",
    )
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        parser.error(f"--port must be between 0 and 65535, not {args.port}")
    return args


def main(argv: Optional[list] = None) -> int:
    args = parse_arguments(argv, os.environ)
    from truss_cli.server.custom.serve import serve

    return serve(
        CustomServerOptions.from_arguments(args),
        args.host,
        args.port,
        environ=os.environ,
        secrets_path=args.secrets_path,
        status_file=args.status_file,
        replica_id=args.replica_id,
        stay_up_on_load_failure=args.stay_up_on_load_failure,
    )


if __name__ == "__main__":
    sys.exit(main())
