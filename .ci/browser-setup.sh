#!/usr/bin/env bash
# Source me: makes Debian's chromium available for the dashboard's browser tests
# (tests/test_dashboard_browser.py drives it with Playwright for Python; never `playwright
# install`, which would download another browser). Exports TRUSS_TEST_CHROMIUM.

_truss_as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

if ! command -v chromium >/dev/null 2>&1; then
    echo "browser-setup: installing Debian's chromium"
    _truss_as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive _truss_as_root apt-get install -y -qq chromium >/dev/null
fi
TRUSS_TEST_CHROMIUM="${TRUSS_TEST_CHROMIUM:-$(command -v chromium)}"
export TRUSS_TEST_CHROMIUM
