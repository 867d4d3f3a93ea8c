"""Image build times for examples/text-classifier, as a user sees them (`truss image build`).

1. cold: `--no-cache`, every layer built (apt-free, but the venv + scikit-learn install);
2. code-only: after a one-line change in model/model.py (on a temporary copy);
3. unchanged: the same directory again (the image is reused, nothing is built).

Usage: python benchmarks/image_build.py [--base-image IMAGE]
       (default: $TRUSS_BASE_IMAGE, else truss-ci-base:bookworm)
Goal: the code-only rebuild under 5 s. Removes the images it creates.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import docker

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "text-classifier"


def timed_build(model_dir: Path, tag: str, base_image: str, *extra: str) -> tuple[float, str]:
    command = [sys.executable, "-m", "truss_cli", "image", "build", str(model_dir), "--tag", tag,
               "--base-image", base_image, *extra]
    start = time.perf_counter()
    completed = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if completed.returncode != 0:
        sys.exit(f"build failed:\n{completed.stderr}")
    summary = next((line for line in completed.stderr.splitlines() if line.startswith(("Built", "Unchanged"))), "")
    return elapsed, summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-image", default=os.environ.get("TRUSS_BASE_IMAGE") or "truss-ci-base:bookworm")
    args = parser.parse_args()
    client = docker.from_env().api
    run_id = uuid.uuid4().hex[:8]
    tags = [f"truss-bench-text-classifier:{run_id}-{step}" for step in ("cold", "edit", "same")]
    with tempfile.TemporaryDirectory(prefix="truss-bench-") as temp:
        copy = Path(temp) / "text-classifier"
        shutil.copytree(EXAMPLE, copy)
        try:
            cold, cold_summary = timed_build(copy, tags[0], args.base_image, "--no-cache")
            model_py = copy / "model" / "model.py"
            model_py.write_text(model_py.read_text() + "\n# benchmark edit\n")
            edit, edit_summary = timed_build(copy, tags[1], args.base_image)
            same, same_summary = timed_build(copy, tags[2], args.base_image)
        finally:
            for tag in tags:
                try:
                    client.remove_image(tag, force=True)
                except docker.errors.APIError:
                    pass
    print(f"base image: {args.base_image}; {os.cpu_count()} CPUs")
    print(f"cold build (--no-cache)          {cold:6.1f} s   {cold_summary}")
    print(f"rebuild after a one-line edit    {edit:6.1f} s   {edit_summary}")
    print(f"unchanged directory              {same:6.1f} s   {same_summary}")
    print(f"code-only rebuild / cold build   {edit / cold:6.3f}   (goal: code-only rebuild < 5 s: "
          f"{'met' if edit < 5 else 'NOT met'})")


if __name__ == "__main__":
    main()
