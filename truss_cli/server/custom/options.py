"""What the custom server replica needs to know about the custom server, and how it is passed
on its command line. The CLI side builds it from the validated config; the replica never
reads config.yaml (a no_build image has no YAML parser)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import List, Optional


@dataclass(frozen=True)
class CustomServerOptions:
    start_command: str
    server_port: int
    predict_endpoint: str
    readiness_endpoint: str
    liveness_endpoint: str

    def to_arguments(self) -> List[str]:
        return [
            "--start-command", self.start_command,
            "--server-port", str(self.server_port),
            "--predict-endpoint", self.predict_endpoint,
            "--readiness-endpoint", self.readiness_endpoint,
            "--liveness-endpoint", self.liveness_endpoint,
        ]

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--start-command", required=True, metavar="COMMAND", help="run with sh -c")
        parser.add_argument("--server-port", required=True, type=int, metavar="PORT", help="the custom server's port")
        for name in ("predict", "readiness", "liveness"):
            parser.add_argument(f"--{name}-endpoint", required=True, metavar="PATH", help=f"its {name} path")

    @classmethod
    def from_arguments(cls, args: argparse.Namespace) -> "CustomServerOptions":
        return cls(
            start_command=args.start_command,
            server_port=args.server_port,
            predict_endpoint=args.predict_endpoint,
            readiness_endpoint=args.readiness_endpoint,
            liveness_endpoint=args.liveness_endpoint,
        )

    def problem(self) -> Optional[str]:
        """What is wrong with these options (the CLI validated them; an image's CMD may be edited)."""
        if not 1 <= self.server_port <= 65535:
            return f"--server-port must be between 1 and 65535, not {self.server_port}"
        for name in ("predict_endpoint", "readiness_endpoint", "liveness_endpoint"):
            if not getattr(self, name).startswith("/"):
                return f"--{name.replace('_', '-')} must start with /, not {getattr(self, name)!r}"
        return None
