"""`python -m truss_cli.server MODEL_DIR [--host H] [--port P]`: serve one model directory."""

from __future__ import annotations

import argparse
import sys
from typing import Optional


def main(argv: Optional[list] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m truss_cli.server",
        description="Serve the model in MODEL_DIR over HTTP (Truss-compatible routes).",
    )
    parser.add_argument("model_dir", metavar="MODEL_DIR", help="directory with config.yaml and model/")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="port to listen on (default: 8080)")
    args = parser.parse_args(argv)
    from truss_cli.server.serve import serve  # after parsing, so --help is instant

    return serve(args.model_dir, args.host, args.port)


if __name__ == "__main__":
    sys.exit(main())
