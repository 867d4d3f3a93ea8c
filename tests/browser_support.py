"""Real headless Chromium (Debian's `chromium`) driven by Playwright for Python: one browser per
test module, a fresh context (cookies) per test. Never `playwright install`: the browser is the
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


# One browser per test module, stopped when the module ends: the sync Playwright runs an event
# loop in this thread while it lives, so a later test's asyncio.run() would fail ("cannot be
# called from a running event loop"), and a second sync Playwright could not start.
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = chromium_path()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright is not installed")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


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
