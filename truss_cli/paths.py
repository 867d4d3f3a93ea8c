"""Where truss-cli keeps its state on this machine (caches, environments, settings), and how
a directory appears there all at once."""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def cache_dir() -> Path:
    """`$TRUSS_CACHE_DIR`, else `$XDG_CACHE_HOME/truss-cli`, else `~/.cache/truss-cli`."""
    explicit = os.environ.get("TRUSS_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "truss-cli"


@contextmanager
def atomic_directory(final: Path | str) -> Iterator[Path]:
    """Yield an empty staging directory next to `final`; on success rename it to `final`.

    Readers never see a half-written `final`: on an exception (Ctrl-C included) the staging
    directory is removed and `final` is left as it was. The staging directory is a sibling so
    the rename stays on one filesystem. `final` may exist as an empty directory (replaced);
    anything else there makes the rename fail with OSError, which the caller may treat as
    "someone else finished first".
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.staging-", dir=final.parent))
    try:
        yield staging
        if final.is_dir() and not final.is_symlink():
            try:
                final.rmdir()  # only succeeds when empty
            except OSError:
                pass
        os.rename(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
