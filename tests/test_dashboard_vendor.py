"""The vendored front-end files are exactly what VENDOR.json says was taken from npm, each with
its license: offline, so a hand edit or a wrong copy fails here, not in a browser."""

from __future__ import annotations

import hashlib
import json

from truss_cli.controlplane.dashboard.render import HTMX
from truss_cli.controlplane.dashboard.static_files import STATIC

VENDOR = STATIC / "vendor"


def test_every_vendored_file_matches_its_recorded_sha256_and_has_a_license():
    recorded = json.loads((VENDOR / "VENDOR.json").read_text())
    assert recorded, "VENDOR.json lists nothing"
    listed = set()
    for package, entry in recorded.items():
        assert entry["version"] and entry["integrity"].startswith("sha512-") and entry["license"], package
        assert (VENDOR / entry["license_file"]).read_text().strip(), f"{package}: empty license file"
        for name, file in entry["files"].items():
            listed.add(name)
            assert hashlib.sha256((VENDOR / name).read_bytes()).hexdigest() == file["sha256"], name
    on_disk = {p.name for p in VENDOR.iterdir() if p.is_file() and p.name != "VENDOR.json"}
    assert on_disk == listed, "a vendored file is missing from VENDOR.json or the other way round"


def test_the_pages_load_the_vendored_htmx_version():
    recorded = json.loads((VENDOR / "VENDOR.json").read_text())
    assert HTMX == f"vendor/htmx-{recorded['htmx.org']['version']}.min.js"
    assert (STATIC / HTMX).is_file()
