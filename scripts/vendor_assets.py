"""Maintainers only: (re)vendor the dashboard's front-end files from npm. CI never runs this.

    python scripts/vendor_assets.py                 # the versions pinned below
    python scripts/vendor_assets.py htmx.org 2.0.12 # bump one (then update render.HTMX, or
                                                    # metrics_page.UPLOT_JS/_CSS for uplot)

For each package: `npm pack name@version` into a temporary directory, check the tarball's
sha512 against the registry's `dist.integrity` (`npm view`), copy its files under names with
the version (so they can be cached for a year) and its license, and rewrite VENDOR.json, which
tests/test_dashboard_vendor.py checks offline.
"""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

VENDOR = Path(__file__).resolve().parent.parent / "truss_cli" / "controlplane" / "dashboard" / "static" / "vendor"
# package -> (version, {file in the tarball: the name it gets here, {version} filled in})
PINNED = {
    "htmx.org": ("2.0.11", {"package/dist/htmx.min.js": "htmx-{version}.min.js"}),
    # The metrics charts (dashboard/metrics_page.py): the browser build (a global `uPlot`) and its CSS.
    "uplot": ("1.6.32", {"package/dist/uPlot.iife.min.js": "uPlot-{version}.iife.min.js",
                         "package/dist/uPlot.min.css": "uPlot-{version}.min.css"}),
}


def npm(*args: str, cwd: Path | None = None) -> str:
    return subprocess.run(["npm", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def vendor(package: str, version: str, files: dict[str, str], recorded: dict) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        packed = json.loads(npm("pack", f"{package}@{version}", "--json", cwd=Path(scratch)))[0]
        tarball = Path(scratch) / packed["filename"]
        registry = npm("view", f"{package}@{version}", "dist.integrity").strip()
        ours = "sha512-" + base64.b64encode(hashlib.sha512(tarball.read_bytes()).digest()).decode()
        if ours != registry:
            sys.exit(f"{package}@{version}: the packed tarball's {ours} is not the registry's {registry}")
        with tarfile.open(tarball) as archive:
            contents = {inner: archive.extractfile(inner).read() for inner in files}  # type: ignore[union-attr]
            license_text = archive.extractfile("package/LICENSE").read()  # type: ignore[union-attr]
        license_name = json.loads(npm("view", f"{package}@{version}", "license", "--json"))
    names = {inner: pattern.format(version=version) for inner, pattern in files.items()}
    old = recorded.get(package, {})
    for stale in old.get("files", {}):
        if stale not in names.values():
            (VENDOR / stale).unlink(missing_ok=True)
    for inner, name in names.items():
        (VENDOR / name).write_bytes(contents[inner])
        print(f"{package}@{version} -> {VENDOR / name}")
    license_file = f"LICENSES/{package}-LICENSE"
    (VENDOR / license_file).parent.mkdir(exist_ok=True)
    (VENDOR / license_file).write_bytes(license_text)
    recorded[package] = {
        "version": version, "tarball": f"https://registry.npmjs.org/{package}/-/{packed['filename']}",
        "integrity": registry, "license": license_name, "license_file": license_file,
        "files": {name: {"from": inner, "sha256": hashlib.sha256(contents[inner]).hexdigest()}
                  for inner, name in names.items()},
    }


def main(argv: list[str]) -> None:
    recorded = json.loads((VENDOR / "VENDOR.json").read_text()) if (VENDOR / "VENDOR.json").exists() else {}
    wanted = dict(PINNED)
    if argv:
        package, version = argv
        _, files = wanted[package]
        wanted = {package: (version, files)}
    for package, (version, files) in wanted.items():
        vendor(package, version, files, recorded)
    (VENDOR / "VENDOR.json").write_text(json.dumps(recorded, indent=2) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
