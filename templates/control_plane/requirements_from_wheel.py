"""Writes the wheel's own dependencies (Requires-Dist, without extras) as a requirements file,
so the image installs them in a layer that stays cached while only the code changes.
Usage: python3 requirements_from_wheel.py WHEEL_DIR OUT_FILE  (standard library only)."""

import email.parser
import pathlib
import sys
import zipfile

wheel = next(pathlib.Path(sys.argv[1]).glob("*.whl"))
with zipfile.ZipFile(wheel) as archive:
    name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
    metadata = email.parser.Parser().parsestr(archive.read(name).decode("utf-8"))
requirements = [r for r in metadata.get_all("Requires-Dist") or [] if "extra ==" not in r]
pathlib.Path(sys.argv[2]).write_text("\n".join(requirements) + "\n", encoding="utf-8")
