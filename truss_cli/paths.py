"""How a directory appears in truss-cli's state all at once (where that state lives is in
`truss_cli.settings`)."""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


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
