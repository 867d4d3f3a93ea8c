"""`python -m truss_cli.controlplane serve | create-admin-key`: the control plane's edge.

It builds the Settings once from its options and the environment and passes them down.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

from truss_cli.controlplane.reconciler import DEV_IDLE_SECONDS
from truss_cli.controlplane.runtimes.kubernetes.selection import KubernetesOptions
from truss_cli.controlplane.runtimes.select import CHOICES
from truss_cli.controlplane.store import Store
from truss_cli.errors import TrussError
from truss_cli.settings import DATABASE_URL_ENV, Settings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m truss_cli.controlplane")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the control plane in the foreground")
    serve.add_argument("--data-dir", type=Path, required=True)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8800)
    serve.add_argument("--runtime", choices=CHOICES, default="auto")
    serve.add_argument("--namespace", default=None, help="--runtime kubernetes: the namespace its models run in")
    serve.add_argument("--kubeconfig", type=Path, default=None,
                       help="--runtime kubernetes: default the pod's service account in a cluster, else $KUBECONFIG or ~/.kube/config")
    serve.add_argument("--registry", default=None, help="--runtime kubernetes: HOST[:PORT]/PREFIX model images are pushed to")
    serve.add_argument("--image-pull-secret", action="append", default=[], metavar="NAME",
                       help="--runtime kubernetes (repeatable): a dockerconfigjson Secret the model pods pull with")
    serve.add_argument("--database-url", default=None, help=f"default: ${DATABASE_URL_ENV} (which keeps it off the command line)")
    serve.add_argument("--build-workers", type=int, default=2)
    serve.add_argument("--dev-idle-seconds", type=float, default=DEV_IDLE_SECONDS,
                       help="scale a development deployment to zero after this long without a request or wake")
    key = commands.add_parser("create-admin-key", help="print a new admin API key (once)")
    key.add_argument("--data-dir", type=Path, required=True)
    key.add_argument("--database-url", default=None, help=f"default: ${DATABASE_URL_ENV}")
    key.add_argument("--name", default=None)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    data_dir = args.data_dir.expanduser().resolve()
    args.database_url = args.database_url or os.environ.get(DATABASE_URL_ENV) or None
    try:
        if args.command == "create-admin-key":
            with Store.open(data_dir, args.database_url) as store:
                print(store.api_keys.create("admin", (), args.name).plaintext)
            return 0
        from truss_cli.controlplane.serve import serve

        settings = dataclasses.replace(Settings.from_environment(os.environ, Path.home()), data_dir=data_dir)
        kubernetes = KubernetesOptions(args.namespace, args.kubeconfig and args.kubeconfig.expanduser().resolve(), args.registry,
                                       tuple(dict.fromkeys(args.image_pull_secret)))
        serve(settings, args.host, args.port, args.runtime, args.database_url, args.build_workers,
              dev_idle_seconds=args.dev_idle_seconds, kubernetes=kubernetes)
        return 0
    except TrussError as exc:
        print(f"error: {exc.message}" + (f"\nhint: {exc.hint}" if exc.hint else ""), file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
