"""What the custom server replica needs to know about the custom server, and how it is passed
on its command line. The CLI side builds it from the validated config; the replica never
reads config.yaml (a no_build image has no YAML parser)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import List, Optional, Sequence


@dataclass(frozen=True)
class CustomServerOptions:
    start_command: str
    server_port: int
    predict_endpoint: str
    readiness_endpoint: str
    liveness_endpoint: str
    # The names declared under config.yaml's `secrets:` (names only: values reach the replica
    # at run time). Each becomes a file the custom server reads, as in Truss (`secret_files.py`).
    secrets: Sequence[str] = ()

    def to_arguments(self) -> List[str]:
        arguments = [
            "--start-command", self.start_command,
            "--server-port", str(self.server_port),
            "--predict-endpoint", self.predict_endpoint,
            "--readiness-endpoint", self.readiness_endpoint,
            "--liveness-endpoint", self.liveness_endpoint,
        ]
        for name in self.secrets:
            arguments.extend(["--secret", name])
        return arguments

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--start-command", required=True, metavar="COMMAND", help="run with sh -c")
        parser.add_argument("--server-port", required=True, type=int, metavar="PORT", help="the custom server's port")
        for name in ("predict", "readiness", "liveness"):
            parser.add_argument(f"--{name}-endpoint", required=True, metavar="PATH", help=f"its {name} path")
        parser.add_argument(
            "--secret", dest="secrets", action="append", default=[], metavar="NAME",
            help="a secret the custom server gets as a file (repeat for each; values come from "
            "TRUSS_SECRETS_DIR or TRUSS_SECRET_<NAME>)",
        )

    @classmethod
    def from_arguments(cls, args: argparse.Namespace) -> "CustomServerOptions":
        return cls(
            start_command=args.start_command,
            server_port=args.server_port,
            predict_endpoint=args.predict_endpoint,
            readiness_endpoint=args.readiness_endpoint,
            liveness_endpoint=args.liveness_endpoint,
            secrets=tuple(args.secrets),
        )

    def problem(self) -> Optional[str]:
        """What is wrong with these options (the CLI validated them; an image's CMD may be edited)."""
        if not 1 <= self.server_port <= 65535:
            return f"--server-port must be between 1 and 65535, not {self.server_port}"
        for name in ("predict_endpoint", "readiness_endpoint", "liveness_endpoint"):
            if not getattr(self, name).startswith("/"):
                return f"--{name.replace('_', '-')} must start with /, not {getattr(self, name)!r}"
        for name in self.secrets:
            problem = secret_name_problem(name)
            if problem:
                return f"--secret {name!r}: {problem}"
        return None


def secret_name_problem(name: str) -> Optional[str]:
    """Why `name` cannot be a secret's name (None if it can). Each secret is the file
    `<secrets directory>/<name>`, so a name must stay a plain file name inside it."""
    if not name or "/" in name or "\0" in name or name.startswith("."):
        return "not usable as a file name (each secret is the file /secrets/<name>): no /, no NUL, no leading ."
    return None
