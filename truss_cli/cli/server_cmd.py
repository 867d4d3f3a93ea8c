"""`truss server start | stop | status | logs | image | manifests`: the control plane on this machine, or its image and
manifests for a cluster."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any, Optional

import typer

from truss_cli.cli import console, edge
from truss_cli.cli.help import Command, Group
from truss_cli.client import local_server
from truss_cli.errors import TrussError

app = typer.Typer(cls=Group, help="Run the control plane (the remote `truss push` talks to) on this machine.", no_args_is_help=True)

DataDirOption = typer.Option(None, "--data-dir", metavar="DIRECTORY", help="Where the control plane keeps its state (default: <data dir>/controlplane).")


def _describe(running: local_server.Running) -> dict[str, Any]:
    server = running.server
    return {
        "url": running.url, "pid": running.state.get("pid"), "runtime": server.get("runtime"),
        "runtime_reason": server.get("runtime_reason"), "database": server.get("database"),
        "data_dir": server.get("data_dir"), "models": server.get("models"), "deployments": server.get("deployments"),
        "replicas": server.get("replicas"), "started": running.started, "remote": running.remote.name,
        "dev_idle_seconds": server.get("dev_idle_seconds"),
    }


def _count(number: object, noun: str) -> str:
    return f"{number} {noun}" + ("" if number == 1 else "s")


def _text(data: dict[str, Any]) -> str:
    reason = f" ({data['runtime_reason']})" if data.get("runtime_reason") else ""
    return (f"Control plane at {data['url']} (pid {data['pid']})\n  runtime:  {data['runtime']}{reason}\n"
            f"  database: {data['database']}\n  data dir: {data['data_dir']}\n"
            f"  {_count(data['models'], 'model')}, {_count(data['deployments'], 'deployment')}, "
            f"{_count(data['replicas'], 'replica')}\n"
            f"  development deployments scale to zero after {data.get('dev_idle_seconds') or 900:g} s idle")


@app.command("start", cls=Command)
def start(
    host: str = typer.Option("127.0.0.1", "--host", metavar="ADDRESS", help="Address to listen on; 0.0.0.0 makes it reachable from other machines."),
    port: int = typer.Option(8800, "--port", metavar="PORT", min=0, max=65535, help="Port to listen on; 0 picks a free one."),
    data_dir: Optional[Path] = DataDirOption,
    runtime: str = typer.Option("auto", "--runtime", metavar="auto|process|docker|kubernetes", help="How replicas run: docker when an engine answers and a base image is usable (TRUSS_BASE_IMAGE, or the default one on this machine) (auto), else local processes; kubernetes: pods in a cluster (with --namespace and --registry)."),
    namespace: Optional[str] = typer.Option(None, "--namespace", metavar="NAMESPACE", help="--runtime kubernetes: the namespace the models run in."),
    kubeconfig: Optional[Path] = typer.Option(None, "--kubeconfig", metavar="PATH", help="--runtime kubernetes: the cluster's kubeconfig (default: the pod's service account inside a cluster, else $KUBECONFIG or ~/.kube/config)."),
    registry: Optional[str] = typer.Option(None, "--registry", metavar="HOST/PREFIX", help="--runtime kubernetes: where model images are pushed (the cluster pulls them by digest)."),
    image_pull_secret: list[str] = typer.Option([], "--image-pull-secret", metavar="NAME", help="--runtime kubernetes (repeatable): a Secret of type kubernetes.io/dockerconfigjson in the namespace that model pods pull their images with (a private registry)."),
    database_url: Optional[str] = typer.Option(None, "--database-url", metavar="URL", envvar="TRUSS_DATABASE_URL", show_envvar=True, help="A PostgreSQL URL (postgresql://...) instead of SQLite under the data dir; kept off the control plane's command line."),
    dev_idle_seconds: Optional[float] = typer.Option(
        None, "--dev-idle-seconds", metavar="SECONDS", min=1,
        help="How long a development deployment may go without a request before it scales to zero (default 900: 15 minutes).",
    ),
    foreground: bool = typer.Option(False, "--foreground", help="Run in this terminal instead of in the background (Ctrl-C stops it)."),
    output: console.OutputFormat = console.output_option(),
) -> None:
    """Start the control plane in the background and record it as remote `local` in ~/.trussrc.

    On a fresh data dir an admin API key is created for it. Its log is <data dir>/controlplane.log.
    """
    settings = edge.settings()
    if runtime not in ("auto", "process", "docker", "kubernetes"):
        raise TrussError(f"--runtime: expected auto, process, docker or kubernetes, got {runtime!r}", exit_code=2)
    from truss_cli.controlplane.runtimes.kubernetes.selection import KubernetesOptions, check_options

    kubernetes = KubernetesOptions(namespace, kubeconfig and kubeconfig.expanduser().resolve(), registry,
                                   tuple(dict.fromkeys(image_pull_secret)))
    check_options(runtime, kubernetes)  # exit 2 before anything starts
    if foreground:
        directory = (data_dir or local_server.default_data_dir(settings)).resolve()
        directory.mkdir(parents=True, exist_ok=True)
        command = local_server.serve_command(directory, host, port, runtime, dev_idle_seconds, kubernetes)
        sys.stdout.flush()
        os.execve(command[0], command, local_server.serve_environment(settings, database_url))
    with console.err.status("Starting the control plane…"):
        running = local_server.start(settings, data_dir, host, port, runtime, database_url, dev_idle_seconds, kubernetes)
    data = _describe(running)
    if running.key_created:
        console.err.print("Created an admin API key; it is in ~/.trussrc as remote `local`.")
    prefix = "Started" if running.started else "Already running:"
    console.result(output, f"{prefix} {_text(data)}", data)


@app.command("status", cls=Command)
def status(data_dir: Optional[Path] = DataDirOption, output: console.OutputFormat = console.output_option()) -> None:
    """Say where the control plane listens, its runtime and database, and what it runs (exit 1 when stopped)."""
    running = local_server.status(edge.settings(), data_dir)
    if running is None:
        console.result(output, "The control plane is not running. Start it with: truss server start", {"running": False})
        raise typer.Exit(1)
    data = {"running": True, **_describe(running)}
    console.result(output, _text(data), data)


@app.command("stop", cls=Command)
def stop(
    data_dir: Optional[Path] = DataDirOption,
    stop_replicas: bool = typer.Option(False, "--stop-replicas", help="Also stop the replicas (by default they keep running and are re-adopted at the next start)."),
    output: console.OutputFormat = console.output_option(),
) -> None:
    """Stop the control plane."""
    state = local_server.stop(edge.settings(), data_dir, stop_replicas)
    if state is None:
        console.result(output, "The control plane was not running.", {"stopped": False})
        return
    console.result(output, f"Stopped the control plane at {state['url']} (pid {state['pid']})", {"stopped": True, "url": state["url"], "pid": state["pid"]})


@app.command("logs", cls=Command)
def logs(
    data_dir: Optional[Path] = DataDirOption,
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new lines as they are written (Ctrl-C stops)."),
) -> None:
    """Print the control plane's own log."""
    path = (data_dir or local_server.default_data_dir(edge.settings())).resolve() / local_server.LOG_FILE
    if not path.exists():
        raise TrussError(f"no log at {path}", hint="the control plane has not been started with this data dir: truss server start")
    out = sys.stdout.buffer
    with open(path, "rb") as log:
        while True:
            chunk = log.read(1 << 16)
            if chunk:
                out.write(chunk)
                out.flush()
                continue
            if not follow:
                return
            try:
                time.sleep(0.5)
            except KeyboardInterrupt:
                return


@app.command("image", cls=Command)
def image(
    tag: Optional[str] = typer.Option(None, "--tag", "-t", metavar="TAG", help="Name the image TAG (default: truss-cli:<version>-<content hash>)."),
    registry: Optional[str] = typer.Option(None, "--registry", metavar="HOST[:PORT]/PREFIX", help="Also push it there (credentials from the Docker config: `docker login HOST`) and print its reference by digest, for `truss server manifests --image`."),
    base_image: Optional[str] = typer.Option(None, "--base-image", metavar="IMAGE", help="Build FROM this image, which must have python3 with venv and pip (default: TRUSS_BASE_IMAGE, else python:3.11-slim, as model images)."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Rebuild every layer, ignoring Docker's cache."),
    output: console.OutputFormat = console.output_option(),
) -> None:
    """Build an image of the control plane from this source checkout (and push it), to run it in a
    cluster with `truss server manifests`.

    It runs as uid 10001 with `truss` on its PATH; the package's dependencies come from PyPI.
    An unchanged checkout reuses the image built before.
    """
    from rich.markup import escape

    from truss_cli.cli import signals
    from truss_cli.cli.build_progress import BuildProgress, print_build_log
    from truss_cli.cli.push_progress import PushBars
    from truss_cli.image.build import BuildFailed
    from truss_cli.image.control_plane_image import build_control_plane_image, choose_base
    from truss_cli.image.engine import connect
    from truss_cli.image.registry import parse_registry, push

    settings = edge.settings()
    target = parse_registry(registry) if registry is not None else None  # before a build of minutes
    base = choose_base(base_image, settings)
    with signals.interruptible():
        client = connect(settings.environ)
        progress = BuildProgress("the control plane", base.base_image)
        try:
            with progress:
                result = build_control_plane_image(client, settings, base, tag=tag, no_cache=no_cache, listener=progress)
        except BuildFailed as failure:
            print_build_log(failure.log)
            raise
        verb = "Unchanged: reusing" if result.reused else "Built"
        console.err.print(f"[green]{verb}[/] {escape(result.tag)} ({result.image_id.split(':')[-1][:12]}) FROM {escape(base.base_image)}")
        data: dict[str, Any] = {"tag": result.tag, "image_id": result.image_id, "reused": result.reused,
                                "base_image": base.base_image}
        if target is None:
            console.result(output, result.tag, data)
            return
        with PushBars(str(target)) as bars:
            reference = push(client, result.tag, target, on_progress=bars)
    console.err.print(f"[green]Pushed[/] {escape(result.tag)} to {escape(str(target))} "
                      f"({bars.sent_layers} layers sent, {bars.existing_layers} already there); "
                      "give it to `truss server manifests --image`")
    console.result(output, reference, {**data, "reference": reference, "digest": reference.split("@", 1)[1]})


@app.command("manifests", cls=Command)
def manifests(
    namespace: str = typer.Option(..., "--namespace", metavar="NAMESPACE", help="The namespace the control plane and its models run in (create it first, or add --create-namespace)."),
    image: str = typer.Option(..., "--image", metavar="IMAGE", help="The control plane's image (a reference by digest is best: REGISTRY/NAME@sha256:…, as `truss server image --registry` prints)."),
    registry: str = typer.Option(..., "--registry", metavar="HOST/PREFIX", help="Where the control plane pushes model images (HOST[:PORT]/PREFIX); the cluster's nodes pull them from it."),
    image_pull_secret: list[str] = typer.Option([], "--image-pull-secret", metavar="NAME", help="A Secret of type kubernetes.io/dockerconfigjson in the namespace (repeatable): model pods pull with it, and the first is the control plane's Docker config, the credentials its pushes send."),
    docker_host: Optional[str] = typer.Option(None, "--docker-host", metavar="tcp://HOST:PORT", help="Build with a Docker engine you run elsewhere instead of the default builder: a Docker engine sidecar in the control plane's pod (privileged)."),
    insecure_registry: bool = typer.Option(False, "--insecure-registry", help="The --registry serves plain HTTP (or a certificate the engine does not trust): the sidecar engine is started with --insecure-registry for it. Your nodes' container runtime must be told too."),
    database_url: Optional[str] = typer.Option(None, "--database-url", metavar="URL", help="Your PostgreSQL's URL (postgresql://USER:PASSWORD@HOST:PORT/DB), put in a Secret."),
    with_postgres: bool = typer.Option(False, "--with-postgres", help="Run a small PostgreSQL in the namespace instead (a StatefulSet with a generated password)."),
    host: Optional[str] = typer.Option(None, "--host", metavar="HOSTNAME", help="The host name the Ingress answers for (default: any)."),
    create_namespace: bool = typer.Option(False, "--create-namespace", help="Also emit the Namespace, with the Pod Security `restricted` level enforced; with the builder sidecar, `privileged` enforced (the sidecar needs it) and `restricted` warned and audited."),
    ingress_class: Optional[str] = typer.Option(None, "--ingress-class", metavar="NAME", help="The IngressClass to use (default: the cluster's default class)."),
    volume_size: str = typer.Option("10Gi", "--volume-size", metavar="SIZE", help="Size of the control plane's data volume (and PostgreSQL's, with --with-postgres)."),
) -> None:
    """Print the manifests that run the control plane in a Kubernetes cluster, as multi-document
    YAML for `kubectl apply -f -` (docs/kubernetes.md)."""
    # Imported here: every other `truss` command would pay for loading them.
    from truss_cli.controlplane.runtimes.kubernetes.install_manifests import InstallOptions, install_manifests
    from truss_cli.controlplane.runtimes.kubernetes.yaml_text import to_yaml

    options = InstallOptions(namespace=namespace, image=image, registry=registry, database_url=database_url,
                             with_postgres=with_postgres, host=host, create_namespace=create_namespace,
                             ingress_class=ingress_class, volume_size=volume_size,
                             image_pull_secrets=tuple(dict.fromkeys(image_pull_secret)), docker_host=docker_host,
                             insecure_registry=insecure_registry)
    sys.stdout.write(to_yaml(install_manifests(options)))
    sys.stdout.flush()
