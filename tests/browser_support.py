"""Real headless Chromium (Debian's `chromium`) driven by Playwright for Python: one browser for
the session, a fresh context (cookies) per test. Never `playwright install`: the browser is the
system's, found at TRUSS_TEST_CHROMIUM or on PATH (.ci/browser-setup.sh installs it in CI).

Like the Docker tests: without chromium (or playwright) a developer machine skips these tests,
CI fails them.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Iterator

import pytest

from conftest import IN_CI

SETUP_HINT = "run `source .ci/browser-setup.sh` (installs Debian's chromium) and `pip install -e '.[test]'`"
# --disable-dev-shm-usage: Debian's wrapper script means to add it on a small /dev/shm and
# does not (a container's 64 MB /dev/shm would crash tabs).
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-dev-shm-usage"]


def _unavailable(message: str) -> None:
    if IN_CI:
        pytest.fail(f"{message}; {SETUP_HINT}")
    pytest.skip(f"{message}; {SETUP_HINT}")


def chromium_path() -> str:
    path = os.environ.get("TRUSS_TEST_CHROMIUM") or shutil.which("chromium")
    if not path or not Path(path).exists():
        _unavailable("no chromium found (TRUSS_TEST_CHROMIUM or PATH)")
    return path  # type: ignore[return-value]


# Every test module imports the `browser` fixture, so pytest registers it once per module and
# would start one Playwright per module; a second sync Playwright in the same thread refuses to
# start ("Sync API inside the asyncio loop"). So the modules share one, closed by the last user.
_shared: dict[str, Any] = {"users": 0, "playwright": None, "browser": None}


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if _shared["users"] == 0:
        executable = chromium_path()
        try:
            from playwright.sync_api import sync_playwright
        except ImportError:
            _unavailable("playwright is not installed")
        playwright = sync_playwright().start()
        try:
            _shared["browser"] = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        except BaseException:
            playwright.stop()
            raise
        _shared["playwright"] = playwright
    _shared["users"] += 1
    try:
        yield _shared["browser"]
    finally:
        _shared["users"] -= 1
        if _shared["users"] == 0:
            _shared["browser"].close()
            _shared["playwright"].stop()
            _shared["browser"] = _shared["playwright"] = None


@pytest.fixture
def context(browser: Any) -> Iterator[Any]:
    opened = browser.new_context()
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where each test's page pictures go (printed, so a failing CI run shows where to look)."""
    directory = Path(os.environ["TRUSS_TEST_OUTPUT"]) / "dashboard" if os.environ.get("TRUSS_TEST_OUTPUT") \
        else tmp_path_factory.mktemp("dashboard-screenshots")
    directory.mkdir(parents=True, exist_ok=True)
    print(f"dashboard screenshots: {directory}")
    return directory
