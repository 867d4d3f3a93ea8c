"""Explaining a failure of the model's code (in `load()` or while answering a request) in
terms of the user's own code.

A failure inside model code reaches the server through the loader, importlib, the request
pipeline, a worker thread or the event loop: frames that say nothing to the model's author.
The traceback shown starts at the first frame of the model's code and leaves out the import
machinery; a SyntaxError shows only its file, line and caret. The one-line description names
the exception and the innermost place in the model directory where it happened, so a
supervisor (`truss run`) or a client can repeat it.

A development replica serves a private copy of the user's tree, whose absolute paths mean
nothing on the user's machine: its worker calls `name_files_relative_to(tree root)`, and
tracebacks then name a file of the tree relative to the root (`File "model/model.py"`), which
the CLI maps back to the user's own file (docs/live-reload.md, C1). Other files (the standard
library, site-packages) keep their absolute paths.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import importlib
import os
import threading
import traceback
from pathlib import Path
from typing import Optional

import truss_cli

_OWN_DIR = os.path.dirname(os.path.abspath(truss_cli.__file__)) + os.sep
_IMPORT_MACHINERY = (os.path.dirname(importlib.__file__) + os.sep, "<frozen importlib")
# Frames that only carry the call into model code: the loader, a thread, a future, a loop.
_PLUMBING = (
    _OWN_DIR,
    *_IMPORT_MACHINERY,
    os.path.dirname(concurrent.futures.__file__) + os.sep,
    os.path.dirname(asyncio.__file__) + os.sep,
    threading.__file__,
)


_relative_root: Optional[str] = None  # set in a development replica's worker (module docstring)


def name_files_relative_to(root: Optional[Path]) -> None:
    """From now on, tracebacks name the files under `root` relative to it (None: absolute)."""
    global _relative_root
    _relative_root = None if root is None else os.path.join(os.path.realpath(root), "")


def user_traceback(exc: BaseException) -> str:
    """The traceback from the first frame of user code on, without import machinery frames."""
    formatted = traceback.TracebackException(type(exc), exc, exc.__traceback__)
    frames = list(formatted.stack)
    first_user = next((i for i, frame in enumerate(frames) if not frame.filename.startswith(_PLUMBING)), None)
    if first_user is not None or isinstance(exc, SyntaxError):
        # A SyntaxError in model.py itself has no user frame: its file, line and caret say it all.
        _keep_frames(formatted, frames[first_user:] if first_user is not None else [])
    # else: nothing but server frames, a bug in the server: shown whole.
    if _relative_root is not None:
        _name_relative(formatted, _relative_root, set())
    return "".join(formatted.format()).rstrip("\n")


def _name_relative(formatted: traceback.TracebackException, root: str, seen: set) -> None:
    if id(formatted) in seen:  # an exception chain can loop
        return
    seen.add(id(formatted))
    for frame in formatted.stack:
        relative = _under(frame.filename, root)
        if relative is not None:
            frame.line  # the source line is looked up lazily by the file's name: read it first
            frame.filename = relative
    if getattr(formatted, "filename", None):  # a SyntaxError's own file
        formatted.filename = _under(formatted.filename, root) or formatted.filename
    for linked in (formatted.__cause__, formatted.__context__):
        if linked is not None:
            _name_relative(linked, root, seen)


def _under(filename: str, root: str) -> Optional[str]:
    """`filename` relative to `root` (which ends with a separator) when it is a file under it."""
    if not filename.startswith(root):
        filename = os.path.realpath(filename)
        if not filename.startswith(root):
            return None
    return Path(filename[len(root):]).as_posix()


def _keep_frames(formatted: traceback.TracebackException, frames: list) -> None:
    formatted.stack = traceback.StackSummary.from_list(
        [frame for frame in frames if not frame.filename.startswith(_IMPORT_MACHINERY)]
    )
    for linked in (formatted.__cause__, formatted.__context__):
        if linked is not None:
            _keep_frames(linked, list(linked.stack))


def describe(exc: BaseException, model_dir: Path) -> str:
    """`ZeroDivisionError: division by zero (model/model.py, line 7)`."""
    # A SyntaxError's str() repeats its location; its `msg` is the message alone.
    message = str(exc.msg if isinstance(exc, SyntaxError) else exc).strip().splitlines()
    what = f"{type(exc).__name__}: {message[0]}" if message else type(exc).__name__
    where = _location(exc, model_dir)
    return what + (f" ({where})" if where else "")


def summary(exc: BaseException, model_dir: Path) -> str:
    """`load failed: ZeroDivisionError: division by zero (model/model.py, line 7)`."""
    return f"load failed: {describe(exc, model_dir)}"


def _location(exc: BaseException, model_dir: Path) -> Optional[str]:
    if isinstance(exc, SyntaxError) and exc.filename:
        return f"{_display_path(exc.filename, model_dir)}, line {exc.lineno}"
    frames = traceback.extract_tb(exc.__traceback__)
    inside = [f for f in frames if _is_within(f.filename, model_dir)]
    candidates = inside or [f for f in frames if not f.filename.startswith(_PLUMBING)]
    if not candidates:
        return None
    frame = candidates[-1]
    return f"{_display_path(frame.filename, model_dir)}, line {frame.lineno}"


def _is_within(filename: str, directory: Path) -> bool:
    try:
        Path(filename).resolve().relative_to(directory)
    except (ValueError, OSError):
        return False
    return True


def _display_path(filename: str, model_dir: Path) -> str:
    try:
        return Path(filename).resolve().relative_to(model_dir).as_posix()
    except (ValueError, OSError):
        return filename
