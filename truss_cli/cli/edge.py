"""Where the CLI meets the machine: the one place its settings are read from the environment."""

from __future__ import annotations

import os
from pathlib import Path

from truss_cli.settings import Settings


def settings() -> Settings:
    return Settings.from_environment(os.environ, Path.home())
