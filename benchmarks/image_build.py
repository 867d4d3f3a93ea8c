"""Image build times for examples/text-classifier, as a user sees them (`truss image build`).

1. cold: `--no-cache`, every layer built (apt-free, but the venv + scikit-learn install);
2. code-only: after a one-line change in model/model.py (on a temporary copy);
3. unchanged: the same directory again (the image is reused, nothing is built);
4. unchanged with a large data/ (--data-mib, default 1024), once with the per-file digests
   remembered from the run before (truss_cli.tree.cached_content_hash) and once with the
   digest store deleted, so every byte is hashed again (from the page cache: a cold disk
   would make the second slower still).

Usage: python benchmarks/image_build.py [--base-image IMAGE] [--data-mib N]
       (default: $TRUSS_BASE_IMAGE, else truss-ci-base:bookworm)
Goal: the code-only rebuild under 5 s. Removes the images it creates; uses its own
TRUSS_CACHE_DIR.
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
_ENV = dict(os.environ)
_BUILT_IMAGES: set[str] = set()


def timed_build(model_dir: Path, tag: str, base_image: str, *extra: str) -> tuple[float, str]:
    command = [sys.executable, "-m", "truss_cli", "image", "build", str(model_dir), "--tag", tag,
               "--base-image", base_image, *extra]
    start = time.perf_counter()
    completed = subprocess.run(command, cwd=REPO, capture_output=True, text=True, env=_ENV)
    elapsed = time.perf_counter() - start
    if completed.returncode != 0:
        sys.exit(f"build failed:\n{completed.stderr}")
    summary = next((line for line in completed.stderr.splitlines() if line.startswith(("Built", "Unchanged"))), "")
    # By id as well as by tag: a tag built twice (e.g. after the server code changed in
    # between) moves to the new image and leaves the old one untagged.
    _BUILT_IMAGES.add(docker.from_env().api.inspect_image(tag)["Id"])
    return elapsed, summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-image", default=os.environ.get("TRUSS_BASE_IMAGE") or "truss-ci-base:bookworm")
    parser.add_argument("--data-mib", type=int, default=1024, help="size of the data/ file for step 4")
    args = parser.parse_args()
    client = docker.from_env().api
    run_id = uuid.uuid4().hex[:8]
    tags = [f"truss-bench-text-classifier:{run_id}-{step}" for step in ("cold", "edit", "same", "data", "warm", "full")]
    with tempfile.TemporaryDirectory(prefix="truss-bench-") as temp:
        _ENV["TRUSS_CACHE_DIR"] = str(Path(temp) / "cache")
        digest_store = Path(temp) / "cache" / "tree-digests"
        copy = Path(temp) / "text-classifier"
        shutil.copytree(EXAMPLE, copy)
        try:
            cold, cold_summary = timed_build(copy, tags[0], args.base_image, "--no-cache")
            model_py = copy / "model" / "model.py"
            model_py.write_text(model_py.read_text() + "\n# benchmark edit\n")
            edit, edit_summary = timed_build(copy, tags[1], args.base_image)
            same, same_summary = timed_build(copy, tags[2], args.base_image)

            write_data(copy / "data" / "weights.bin", args.data_mib)
            timed_build(copy, tags[3], args.base_image)  # builds the data layer
            timed_build(copy, tags[3], args.base_image)  # remembers the digest (file now > 2 s old)
            warm, warm_summary = timed_build(copy, tags[4], args.base_image)
            shutil.rmtree(digest_store)
            full, full_summary = timed_build(copy, tags[5], args.base_image)
        finally:
            for image in [*tags, *_BUILT_IMAGES]:
                try:
                    client.remove_image(image, force=True)
                except docker.errors.APIError:
                    pass
    print(f"base image: {args.base_image}; {os.cpu_count()} CPUs")
    print(f"cold build (--no-cache)          {cold:6.1f} s   {cold_summary}")
    print(f"rebuild after a one-line edit    {edit:6.1f} s   {edit_summary}")
    print(f"unchanged directory              {same:6.1f} s   {same_summary}")
    print(f"code-only rebuild / cold build   {edit / cold:6.3f}   (goal: code-only rebuild < 5 s: "
          f"{'met' if edit < 5 else 'NOT met'})")
    print(f"unchanged, {args.data_mib} MiB data/, digests remembered   {warm:6.2f} s   {warm_summary}")
    print(f"unchanged, {args.data_mib} MiB data/, digests re-read      {full:6.2f} s   {full_summary}")
    print(f"remembered / re-read             {warm / full:6.3f}")


def write_data(path: Path, mib: int) -> None:
    block = os.urandom(1 << 20)
    with open(path, "wb") as output:
        for _ in range(mib):
            output.write(block)
    time.sleep(2.1)  # older than the racy window, so the next run may remember its digest


if __name__ == "__main__":
    main()
