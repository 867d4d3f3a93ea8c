"""uvicorn, imported without its file-watching reloader.

`import uvicorn` imports watchfiles whenever it is installed, only to offer `--reload`,
which a replica never uses. On a developer machine the CLI's environment has watchfiles,
and a replica must not load the CLI's dependencies, so the import is blocked while uvicorn
loads (uvicorn then falls back to its stat-based reloader) and unblocked right after, so
model code can still import watchfiles itself.
"""

import sys

_blocked = "watchfiles" not in sys.modules
if _blocked:
    sys.modules["watchfiles"] = None  # type: ignore[assignment]  # makes `import watchfiles` raise ImportError
try:
    import uvicorn
finally:
    if _blocked:
        del sys.modules["watchfiles"]

__all__ = ["uvicorn"]
