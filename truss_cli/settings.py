"""The settings library code runs with, built once at the edge and passed down.

The CLI builds them from its flags and the environment (`Settings.from_environment`); a
long-running server will build them from its own options. Library code takes a Settings
argument and never looks at os.environ or the home directory itself, so two callers in one
process (a test, a control plane serving many users) cannot leak settings into each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Optional

CACHE_DIR_ENV = "TRUSS_CACHE_DIR"
DATA_DIR_ENV = "TRUSS_DATA_DIR"
BASE_IMAGE_ENV = "TRUSS_BASE_IMAGE"
# The control plane's database URL: passed in the environment, never on a command line (it may
# carry a password, and `ps` shows command lines to every user).
DATABASE_URL_ENV = "TRUSS_DATABASE_URL"
_APP_DIR_NAME = "truss-cli"


@dataclass(frozen=True)
class Settings:
    # Rebuildable state: environments, server bundles, per-file digests, build staging.
    cache_dir: Path
    # State worth keeping (a control plane's store, archives); nothing writes it yet.
    data_dir: Path
    # The user's home: where per-user tools live (pyenv's Pythons).
    home: Path
    # Build images FROM this instead of config.yaml's base_image (a machine without Docker Hub).
    base_image: Optional[str] = None
    # The environment child processes start from: replicas inherit it (TRUSS_SECRET_* reach
    # the model that way), installers and the Docker client read their own variables in it.
    environ: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_environment(cls, environ: Mapping[str, str], home: Path) -> "Settings":
        """Settings from environment variables, with the XDG defaults under `home`.

        Cache: $TRUSS_CACHE_DIR, else $XDG_CACHE_HOME/truss-cli, else ~/.cache/truss-cli.
        Data: $TRUSS_DATA_DIR, else $XDG_DATA_HOME/truss-cli, else ~/.local/share/truss-cli.
        """
        cache = environ.get(CACHE_DIR_ENV) or str(Path(environ.get("XDG_CACHE_HOME") or home / ".cache") / _APP_DIR_NAME)
        data = environ.get(DATA_DIR_ENV) or str(
            Path(environ.get("XDG_DATA_HOME") or home / ".local" / "share") / _APP_DIR_NAME
        )
        return cls(
            cache_dir=Path(cache),
            data_dir=Path(data),
            base_image=(environ.get(BASE_IMAGE_ENV) or "").strip() or None,
            environ=dict(environ),
            home=home,
        )
