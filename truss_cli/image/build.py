"""Building a model's image: reuse an identical one, else stream a classic `docker build`.

The engine's output is parsed into steps (`Step 3/14 : RUN ...`) and lines, and reported to a
listener as they arrive, so the CLI can show the current step and the last few lines while
the full log is kept for a failure report.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import docker
import docker.errors

from truss_cli.errors import TrussError, UsageError
from truss_cli.image.context import write_build_context
from truss_cli.image.engine import find_built_image, image_id
from truss_cli.image.labels import LABEL_BUILD_KEY
from truss_cli.image.plan import ImagePlan
from truss_cli.settings import BASE_IMAGE_ENV, Settings

# Docker's reference grammar (distribution/reference), without a digest: a tag names an image.
_DOMAIN_PART = r"(?:[A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9])"
_PATH_PART = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_IMAGE_REFERENCE = re.compile(
    rf"(?:{_DOMAIN_PART}(?:\.{_DOMAIN_PART})*(?::[0-9]+)?/)?"  # registry host[:port]/
    rf"{_PATH_PART}(?:/{_PATH_PART})*"  # repository path
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?"  # :tag
)
_MAX_NAME_LENGTH = 255
_STEP = re.compile(r"^Step (\d+)/(\d+) : (.*)$")
_BUILT = re.compile(r"^Successfully built ([0-9a-f]+)$")


@dataclass
class BuildStep:
    number: int
    total: int
    instruction: str
    cached: bool = False


@dataclass
class BuildResult:
    image_id: str
    tag: str
    reused: bool
    build_key: str
    steps: list[BuildStep] = field(default_factory=list)
    log: list[str] = field(default_factory=list)


class BuildListener:
    """Receives progress while an image builds. The defaults ignore everything."""

    def on_note(self, text: str) -> None: ...

    def on_step(self, step: BuildStep) -> None: ...

    def on_line(self, text: str) -> None: ...


class BuildFailed(TrussError):
    """A build that stopped; carries the failing step and the full log."""

    def __init__(self, message: str, hint: str | None, step: BuildStep | None, log: list[str]):
        super().__init__(message, hint)
        self.step = step
        self.log = log


def check_tag(tag: str) -> None:
    """Raise a UsageError unless `tag` is an image name Docker accepts (`[host[:port]/]repo[:tag]`)."""
    repository, _ = split_tag(tag)
    if _IMAGE_REFERENCE.fullmatch(tag) and len(repository) <= _MAX_NAME_LENGTH:
        return
    raise UsageError(
        f"--tag {tag!r}: not a valid image name (lowercase letters and digits, separated by '.', '_', '-' "
        "or '/'; optionally a registry `host[:port]/` before and a `:tag` of up to 128 letters, digits, "
        "'_', '.', '-' after)",
        hint="for example --tag my-model:v1 or --tag registry.local:5000/team/my-model:v1",
    )


def split_tag(tag: str) -> tuple[str, str]:
    """`repo:tag` -> (repo, tag); a registry port (`host:5000/repo`) is not a tag."""
    repository, _, name = tag.rpartition(":")
    if not repository or "/" in name:
        return tag, "latest"
    return repository, name


def build_image(
    client: docker.APIClient,
    plan: ImagePlan,
    settings: Settings,
    tag: str | None = None,
    no_cache: bool = False,
    listener: BuildListener | None = None,
) -> BuildResult:
    """Build (or reuse) the image for `plan` and tag it `tag` (default: `plan.default_tag`)."""
    listener = listener or BuildListener()
    tag = tag or plan.default_tag
    check_tag(tag)  # before the engine is asked anything: it would fail only after the build
    base_id = image_id(client, plan.base_image)
    build_key = plan.build_key(base_id or plan.base_image)
    if not no_cache:
        existing = find_built_image(client, build_key)
        if existing is not None:
            try:
                client.tag(existing, *split_tag(tag))
            except docker.errors.APIError as exc:
                raise TrussError(f"Could not tag image {existing[7:19]} as {tag}: {exc.explanation or exc}") from None
            return BuildResult(existing, tag, reused=True, build_key=build_key)
    if base_id is None:
        listener.on_note(f"Base image {plan.base_image} is not on this machine; Docker will try to pull it.")
    staging_root = settings.cache_dir / "build"
    staging_root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="context-", dir=staging_root))
    try:
        context = write_build_context(plan, staging / "context", link=True)
        return stream_build(
            client, plan, context, tag, build_key, no_cache, listener, base_is_local=base_id is not None
        )
    finally:
        shutil.rmtree(staging, ignore_errors=True)


class BaseImageChoice(Protocol):
    """What a failed build's message says about the base image (an ImagePlan is one)."""

    base_image: str
    base_image_source: str


def stream_build(
    client: docker.APIClient,
    plan: BaseImageChoice,
    context: Path,
    tag: str,
    build_key: str,
    no_cache: bool,
    listener: BuildListener,
    base_is_local: bool,
) -> BuildResult:
    """Build the context at `context` (its Dockerfile) as `tag`, labelled with `build_key` so
    an identical build is found again (`engine.find_built_image`), reporting to `listener`."""
    result = BuildResult(image_id="", tag=tag, reused=False, build_key=build_key)
    step: BuildStep | None = None
    pending = ""
    chunks = client.build(
        path=str(context),
        tag=tag,
        rm=True,
        forcerm=True,
        nocache=no_cache,
        pull=False,
        decode=True,
        labels={LABEL_BUILD_KEY: build_key},
    )
    try:
        for chunk in chunks:
            if "error" in chunk:
                lines = (pending + chunk["error"]).splitlines()
                result.log.extend(lines)
                raise _failure(plan, step, chunk["error"].strip(), result.log, base_is_local)
            text = chunk.get("stream")
            if text is None:
                text = _pull_status(chunk)
            if not text:
                aux_id = (chunk.get("aux") or {}).get("ID")
                if aux_id:
                    result.image_id = aux_id
                continue
            pending += text
            *complete, pending = pending.split("\n")
            for line in complete:
                step = _consume_line(line.rstrip("\r"), step, result, listener)
        if pending:
            _consume_line(pending, step, result, listener)
    except docker.errors.APIError as exc:
        error = exc.explanation or str(exc)
        result.log.append(error)  # e.g. a Dockerfile the engine rejects: no other log exists
        raise _failure(plan, step, error, result.log, base_is_local) from None
    if not result.image_id:
        raise _failure(plan, step, "the engine reported no image", result.log, base_is_local)
    return result


def _consume_line(line: str, step: BuildStep | None, result: BuildResult, listener: BuildListener) -> BuildStep | None:
    result.log.append(line)
    match = _STEP.match(line)
    if match:
        step = BuildStep(int(match.group(1)), int(match.group(2)), match.group(3))
        result.steps.append(step)
        listener.on_step(step)
        return step
    if line.strip() == "---> Using cache" and step is not None:
        step.cached = True
    built = _BUILT.match(line)
    if built and not result.image_id:
        result.image_id = built.group(1)
    listener.on_line(line)
    return step


def _pull_status(chunk: dict) -> str:
    status = chunk.get("status")
    if not status or chunk.get("progressDetail"):
        return ""
    prefix = f"{chunk['id']}: " if chunk.get("id") else ""
    return f"{prefix}{status}\n"


def _failure(
    plan: BaseImageChoice, step: BuildStep | None, error: str, log: list[str], base_is_local: bool
) -> BuildFailed:
    # Only a FROM that had to pull means a missing base image; anything else (a Dockerfile
    # the engine rejects, a failing step) is reported in the engine's own words.
    if step is not None and step.instruction.upper().startswith("FROM") and not base_is_local:
        return BuildFailed(
            f"Base image {plan.base_image} not found: it is not on this machine and could not be pulled ({error})",
            hint=(
                f"Use an image this machine has: `--base-image IMAGE` or `{BASE_IMAGE_ENV}=IMAGE` "
                f"(chosen now from {plan.base_image_source}); list local images with `docker images`."
            ),
            step=step,
            log=log,
        )
    if step is None:
        return BuildFailed(f"Image build failed before the first step: {error}", hint=None, step=None, log=log)
    return BuildFailed(
        f"Image build failed at step {step.number}/{step.total} ({step.instruction}): {error}",
        hint=None,
        step=step,
        log=log,
    )
