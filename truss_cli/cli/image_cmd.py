"""`truss image build-context | build | push | run`: a model directory as a Docker image."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from truss_cli.cli import console, edge, signals
from truss_cli.cli.build_progress import BuildProgress, print_build_log
from truss_cli.cli.download_progress import DownloadBars
from truss_cli.cli.help import Command, Group
from truss_cli.cli.push_progress import PushBars
from truss_cli.image.build import BuildFailed, BuildResult, build_image, split_tag
from truss_cli.image.container import (
    HOST,
    RunningContainer,
    check_secrets_dir,
    runtime_environment,
    start_container,
    wait_until_ready,
)
from truss_cli.image.context import write_build_context
from truss_cli.image.engine import connect
from truss_cli.image.limits import ContainerLimits, container_limits
from truss_cli.image.plan import ImagePlan, plan_image
from truss_cli.image.registry import parse_registry, push as push_image
from truss_cli.net import check_port_free
from truss_cli.settings import BASE_IMAGE_ENV, Settings
from truss_cli.supervision import ReplicaFailed

# As a shell reports a command ended by SIGINT, whether the model was loading or serving.
_INTERRUPTED = 130

app = typer.Typer(cls=Group, help="Build and run Docker images of a model directory.", no_args_is_help=True)

ModelDir = typer.Argument(
    Path("."), metavar="DIRECTORY", help="The model directory (with config.yaml); default: the current directory.", show_default=False
)
BaseImageOption = typer.Option(
    None,
    "--base-image",
    metavar="IMAGE",
    help=f"Build FROM this image instead of config.yaml's base_image or python:<version>-slim "
    f"(also settable with {BASE_IMAGE_ENV}; for machines without Docker Hub).",
    show_default=False,
)
TagOption = typer.Option(
    None, "--tag", "-t", metavar="TAG", help="Name the image TAG (default: truss-<model name>:<content hash>).", show_default=False
)


@app.command("build-context", cls=Command)
def build_context(
    model_dir: Path = typer.Argument(..., metavar="DIRECTORY", help="The model directory (with config.yaml)."),
    out_dir: Path = typer.Argument(
        ..., metavar="OUT_DIR", help="Where to write the context: a new or empty directory outside the model directory."
    ),
    base_image: Optional[str] = BaseImageOption,
) -> None:
    """Write the Docker build context (Dockerfile and files) without building it."""
    plan = _plan(model_dir, base_image, edge.settings())
    written = write_build_context(plan, out_dir)
    console.err.print(f"Build context for [bold]{escape(plan.model_name)}[/] written to {escape(str(written))}")
    console.out.print(f"docker build {written}", markup=False)


@app.command("build", cls=Command)
def build(
    model_dir: Path = ModelDir,
    tag: Optional[str] = TagOption,
    no_cache: bool = typer.Option(False, "--no-cache", help="Rebuild every layer, ignoring Docker's cache."),
    base_image: Optional[str] = BaseImageOption,
    output: console.OutputFormat = console.output_option(),
) -> None:
    """Build the model's image. An unchanged directory reuses the image built before."""
    settings = edge.settings()
    with signals.interruptible():  # a killed build still removes its staged context
        plan = _plan(model_dir, base_image, settings)
        result = _build(plan, settings, tag, no_cache)
    console.result(
        output, result.tag, {"tag": result.tag, "image_id": result.image_id, "reused": result.reused}
    )


@app.command("push", cls=Command)
def push(
    model_dir: Path = ModelDir,
    registry: str = typer.Option(
        ...,
        "--registry",
        metavar="HOST[:PORT]/PREFIX",
        help="The registry and repository prefix to push to, without a scheme (e.g. registry.example.com/team); "
        "credentials come from the Docker config (`docker login HOST`).",
    ),
    tag: Optional[str] = TagOption,
    base_image: Optional[str] = BaseImageOption,
    output: console.OutputFormat = console.output_option(),
) -> None:
    """Build the model's image (or reuse it), push it, and print its reference by digest.

    The image goes to HOST/PREFIX/NAME:TAG (NAME and TAG from the built image's name); the
    printed HOST/PREFIX/NAME@sha256:... names exactly what was pushed, as a cluster should pull it.
    """
    settings = edge.settings()
    target = parse_registry(registry)  # a misnamed registry is refused before a build that may take minutes
    with signals.interruptible():
        plan = _plan(model_dir, base_image, settings)
        result = _build(plan, settings, tag, no_cache=False)
        with PushBars(str(target)) as bars:
            reference = push_image(connect(settings.environ), result.tag, target, on_progress=bars)
    console.err.print(
        f"[green]Pushed[/] {escape(result.tag)} to {escape(str(target))} "
        f"({bars.sent_layers} layers sent, {bars.existing_layers} already there)"
    )
    console.result(
        output,
        reference,
        {
            "reference": reference,
            "digest": reference.split("@", 1)[1],
            "pushed_tag": f"{reference.split('@', 1)[0]}:{split_tag(result.tag)[1]}",
            "tag": result.tag,
            "image_id": result.image_id,
            "reused": result.reused,
        },
    )


@app.command("run", cls=Command)
def run(
    model_dir: Path = ModelDir,
    tag: Optional[str] = TagOption,
    port: int = typer.Option(
        8080, "--port", "-p", min=0, max=65535, metavar="PORT",
        help="Serve on 127.0.0.1:PORT; 0 picks a free port (the URL printed says which).",
    ),
    detach: bool = typer.Option(
        False, "--detach", help="Leave the container running in the background once the model is ready."
    ),
    base_image: Optional[str] = BaseImageOption,
    secrets_dir: Optional[Path] = typer.Option(
        None,
        "--secrets-dir",
        metavar="DIRECTORY",
        help="Mount this directory (one file per secret) read-only; declared secrets are also taken from "
        "TRUSS_SECRET_<name> environment variables.",
        show_default=False,
    ),
    no_limits: bool = typer.Option(
        False,
        "--no-limits",
        help="Ignore config.yaml's resources.cpu and resources.memory, which otherwise limit the container "
        "(a config without them runs unlimited).",
    ),
    output: console.OutputFormat = console.output_option(),
) -> None:
    """Build the image if needed, start it, wait until the model is ready, and stream its logs.

    Ctrl-C (or SIGTERM) stops and removes the container, also while the model is still loading (exit code 130).
    """
    settings = edge.settings()
    with signals.interruptible():
        plan = _plan(model_dir, base_image, settings)
        # What can be checked without the engine is checked before a build that may take minutes
        # (the tag is checked first thing by build_image).
        if port != 0:
            check_port_free(HOST, port)
        if secrets_dir is not None:
            check_secrets_dir(secrets_dir.resolve())
        result = _build(plan, settings, tag, no_cache=False)
        client = connect(settings.environ)
        limits = ContainerLimits() if no_limits else container_limits(plan.config, client.info().get("NCPU"))
        for note in limits.notes:
            console.warning(note)
        container: RunningContainer | None = None
        keep = False
        try:
            container = start_container(
                client,
                result.tag,
                plan.model_name,
                port,
                environment=runtime_environment(plan.config, settings.environ),
                secrets_dir=secrets_dir,
                limits=limits,
                expose_errors=True,  # the person calling is the one who wrote the model
            )
            with console.err.status(f"Starting {container.name} (waiting for load() to finish)..."):
                wait_until_ready(container)
            console.err.print(f"[green]Ready[/] {escape(plan.model_name)} in container {container.name} ({limits.describe()})")
            console.result(
                output,
                container.url,
                {"url": container.url, "container": container.name, "tag": result.tag, "image_id": result.image_id},
            )
            if detach:
                keep = True
                console.err.print(f"Stop it with: docker rm -f {container.name}")
                return
            console.err.print("[dim]Streaming logs; press Ctrl-C to stop and remove the container.[/]")
            exit_code = container.stream_logs(console.log_sink())
        except ReplicaFailed as failure:
            assert container is not None
            _show_failure(container, failure)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            console.err.print("\nStopping...")
            raise typer.Exit(_INTERRUPTED) from None
        finally:
            if container is not None and not keep:
                _remove_uninterrupted(container)
                console.err.print(f"Removed {container.name}")
    console.error(f"the model server exited with code {exit_code}")
    raise typer.Exit(1)


def _show_failure(container: RunningContainer, failure: ReplicaFailed) -> None:
    """The model's own traceback when the server reported one, else the container's whole log."""
    details = failure.traceback or container.log_text()
    if details.strip():
        console.err.rule(f"{container.name}: log" if not failure.traceback else f"{container.name}: load failed")
        console.err.print(details.rstrip(), markup=False, highlight=False)
        console.err.rule()
    console.error(str(failure))


def _plan(model_dir: Path, base_image: Optional[str], settings: Settings) -> ImagePlan:
    with DownloadBars() as bars:  # external_data is fetched on this machine, before the build
        plan = plan_image(model_dir, settings, base_image, on_download=bars)
    for note in plan.notes:
        console.warning(note)
    return plan


def _build(plan: ImagePlan, settings: Settings, tag: Optional[str], no_cache: bool) -> BuildResult:
    client = connect(settings.environ)
    progress = BuildProgress(plan.model_name, plan.base_image)
    try:
        with progress:
            result = build_image(client, plan, settings, tag=tag, no_cache=no_cache, listener=progress)
    except BuildFailed as failure:
        print_build_log(failure.log)
        raise
    for warning in progress.warnings:
        console.warning(warning)
    if result.reused:
        console.err.print(
            f"[green]Unchanged[/]: reusing image {result.tag} ({result.image_id[7:19]})"
        )
    else:
        cached = sum(1 for step in result.steps if step.cached)
        console.err.print(
            f"[green]Built[/] {result.tag} ({result.image_id.split(':')[-1][:12]}; "
            f"{cached}/{len(result.steps)} steps from cache)"
        )
    return result


def _remove_uninterrupted(container: RunningContainer) -> None:
    with signals.uninterruptible():
        container.remove()
