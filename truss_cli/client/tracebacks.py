"""A development replica's traceback, with the user's own paths.

The replica names a file of its tree relative to the tree's root (`File "model/model.py",
line 7, in load`, docs/live-reload.md C1): its private copy's path would mean nothing to the
user. The CLI turns such a name into the path of the file in the watched directory, so a
terminal or an editor can open it; a name that is no file here (site-packages, the stdlib,
a file deleted since) is left as the replica wrote it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from truss_cli.sync.patch import PatchError, check_relative_path

# `File "<name>"` as the traceback module writes it; the name never holds a double quote
# the replica would have to escape, since tree paths are checked (no quotes needed).
_FILE = re.compile(r'File "([^"\n]+)"')


def localize(text: str | None, local_path: Callable[[str], Path]) -> str | None:
    """`text` with each tree-relative `File "..."` that exists locally named by its local path."""
    if not text:
        return text

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name.startswith(("/", "<")):
            return match.group(0)
        try:
            check_relative_path(name)
            local = local_path(name)
        except (PatchError, ValueError, IndexError):
            return match.group(0)
        return f'File "{local}"' if local.is_file() else match.group(0)

    return _FILE.sub(replace, text)
