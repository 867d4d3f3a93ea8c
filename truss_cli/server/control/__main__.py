"""`python -m truss_cli.server.control MODEL_DIR ... --control-port N`: a development replica.

The same arguments as `python -m truss_cli.server`, plus the control API's port; its token
comes from TRUSS_CONTROL_TOKEN only. A development replica always stays up when the model
fails to load (a fixed file recovers it), whatever --stay-up-on-load-failure says.
"""

from __future__ import annotations

import os
import sys
from typing import Optional

from truss_cli.server.__main__ import build_parser, check_arguments
from truss_cli.server.protocol import CONTROL_TOKEN_ENV


def main(argv: Optional[list] = None) -> int:
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
    args = check_arguments(parser, parser.parse_args(argv))
    if not 0 <= args.control_port <= 65535:
        parser.error(f"--control-port must be between 0 and 65535, not {args.control_port}")
    token = os.environ.get(CONTROL_TOKEN_ENV, "")
    if not token:
        parser.error(f"no control token: set {CONTROL_TOKEN_ENV} (it is never taken from the command line)")
    from truss_cli.server.control.supervisor import run  # after parsing, so --help is instant

    return run(args, token)


if __name__ == "__main__":
    sys.exit(main())
