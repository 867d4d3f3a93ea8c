"""`python -m truss_cli.server.control MODEL_DIR ... --control-port N`: a development replica.

The same arguments as `python -m truss_cli.server`, plus the control API's address and port;
its token comes from TRUSS_CONTROL_TOKEN or from a file (`--control-token-file`), never from
the command line. A container's environment is shown by `docker inspect`, so the docker
runtime copies a file into the container and binds the control API on the container's
address (`--control-host 0.0.0.0`, published on the host's loopback only); the process
runtime keeps the loopback default and the variable. A development replica always stays up
when the model fails to load (a fixed file recovers it), whatever --stay-up-on-load-failure
says.

`--provision SPEC --run-as UID` before the other arguments (a container started as root):
first install the tree's system packages and requirements (`provision.start_replica`), then
run the replica as UID on the environment's interpreter, with the remaining arguments.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Mapping, Optional

from truss_cli.server.__main__ import build_parser, check_arguments
from truss_cli.server.protocol import CONTROL_TOKEN_ENV


def main(argv: Optional[list] = None) -> int:
    arguments = sys.argv[1:] if argv is None else list(argv)
    if arguments[:1] == ["--provision"]:
        if len(arguments) < 4 or arguments[2] != "--run-as" or not arguments[3].isdigit():
            print("usage: python -m truss_cli.server.control --provision SPEC --run-as UID MODEL_DIR ...", file=sys.stderr)
            return 2
        from truss_cli.server.control.provision import start_replica

        start_replica(Path(arguments[1]), int(arguments[3]), arguments[4:])  # execs the replica
    parser = build_parser(
        os.environ,
        prog="python -m truss_cli.server.control",
        description="Serve the model in MODEL_DIR as a development replica: patches and restarts "
        "through a control API, without a failed request.",
    )
    parser.add_argument(
        "--control-port",
        type=int,
        default=0,
        help=f"loopback port of the control API; 0 picks a free one, reported in the status (token: ${CONTROL_TOKEN_ENV})",
    )
    parser.add_argument(
        "--control-host",
        default="127.0.0.1",
        help="address the control API binds (default: 127.0.0.1; a container binds 0.0.0.0 and the engine "
        "publishes the port on the host's loopback)",
    )
    parser.add_argument(
        "--control-token-file",
        type=Path,
        metavar="PATH",
        help=f"read the control token from this file instead of ${CONTROL_TOKEN_ENV}",
    )
    args = check_arguments(parser, parser.parse_args(arguments))
    if not 0 <= args.control_port <= 65535:
        parser.error(f"--control-port must be between 0 and 65535, not {args.control_port}")
    token = _token(parser, args.control_token_file, os.environ)
    from truss_cli.server.control.supervisor import run  # after parsing, so --help is instant

    return run(args, token)


def _token(parser: argparse.ArgumentParser, path: Optional[Path], environ: Mapping[str, str]) -> str:
    if path is None:
        token = environ.get(CONTROL_TOKEN_ENV, "")
        if not token:
            parser.error(
                f"no control token: set {CONTROL_TOKEN_ENV} or give --control-token-file PATH "
                "(it is never taken from the command line)"
            )
        return token
    try:
        token = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        parser.error(f"--control-token-file {path}: cannot read it ({exc.strerror or exc})")
    if not token:
        parser.error(f"--control-token-file {path}: the file is empty; write the control token into it")
    return token


if __name__ == "__main__":
    sys.exit(main())
