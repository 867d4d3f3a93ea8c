"""`--runtime kubernetes --namespace NS [--kubeconfig PATH] --registry HOST/PREFIX
[--image-pull-secret NAME ...]`: the options, checked before anything starts, and the runtime
they make."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from truss_cli.errors import TrussError, UsageError
from truss_cli.settings import Settings

KIND = "kubernetes"
# A Secret's name: a DNS-1123 subdomain (lowercase alphanumerics, '-' and '.').
_SECRET_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


@dataclass(frozen=True)
class KubernetesOptions:
    namespace: Optional[str] = None
    kubeconfig: Optional[Path] = None  # None: in-cluster when in a pod, else $KUBECONFIG or ~/.kube/config
    registry: Optional[str] = None  # HOST[:PORT]/PREFIX
    # Secrets of type kubernetes.io/dockerconfigjson the model pods pull their images with.
    image_pull_secrets: tuple[str, ...] = ()

    def given(self) -> list[str]:
        return [flag for flag, value in (("--namespace", self.namespace), ("--kubeconfig", self.kubeconfig),
                                         ("--registry", self.registry), ("--image-pull-secret", self.image_pull_secrets))
                if value]


def check_options(kind: str, options: KubernetesOptions) -> None:
    """Exit 2 with what to add, before a control plane starts: the options belong together."""
    if kind != KIND:
        if options.given():
            raise UsageError(f"{', '.join(options.given())}: only with --runtime kubernetes (the runtime is {kind})")
        return
    missing = [hint for flag, hint in (("--namespace", "--namespace NS (the namespace the models run in)"),
                                       ("--registry", "--registry HOST/PREFIX (where model images are pushed; the cluster pulls from it)"))
               if flag not in options.given()]
    if missing:
        raise UsageError(f"--runtime kubernetes needs {' and '.join(missing)}")
    from truss_cli.image.registry import parse_registry

    parse_registry(options.registry or "")  # a malformed registry fails now, not at the first push
    check_secret_names(options.image_pull_secrets)


def check_secret_names(names: tuple[str, ...], flag: str = "--image-pull-secret") -> None:
    """Exit 2 for a name no Secret can have: the pods would fail only later, at their first pull."""
    for name in names:
        if not _SECRET_NAME.match(name) or len(name) > 253:
            raise UsageError(f"{flag} {name!r}: expected the name of a Secret in the namespace "
                             "(lowercase letters, digits, '-' and '.'), such as registry-login",
                             hint="create one with: kubectl -n NS create secret docker-registry registry-login "
                                  "--docker-server=HOST --docker-username=USER --docker-password=...")


def kubernetes_runtime(settings: Settings, options: KubernetesOptions) -> tuple[object, str]:
    """(the runtime, the one line saying which cluster and namespace)."""
    check_options(KIND, options)
    from truss_cli.controlplane.runtimes.docker import DockerRuntime
    from truss_cli.controlplane.runtimes.kubernetes import objects
    from truss_cli.controlplane.runtimes.kubernetes.api import SERVICE_ACCOUNT, KubernetesApi
    from truss_cli.controlplane.runtimes.kubernetes.runtime import KubernetesRuntime
    from truss_cli.image.registry import parse_registry

    assert options.namespace and options.registry
    if options.kubeconfig is None and Path(SERVICE_ACCOUNT, "token").is_file():
        api = KubernetesApi.in_cluster(options.namespace)
        where = "in-cluster service account"
    else:
        path = options.kubeconfig or _default_kubeconfig(settings)
        api = KubernetesApi.from_kubeconfig(path, options.namespace)
        where = f"kubeconfig {path}"
    try:
        api.pods({objects.MANAGED_BY: objects.MANAGER})  # reachable, and these credentials may list pods
        images = DockerRuntime(settings)  # builds need an engine; its error says how to start one
    except TrussError:
        api.close()
        raise
    registry = parse_registry(options.registry)
    runtime = KubernetesRuntime(api, registry, images, image_pull_secrets=options.image_pull_secrets, data_dir=settings.data_dir)
    pulled_with = (f"; pods pull with {', '.join(options.image_pull_secrets)}" if options.image_pull_secrets else "")
    return runtime, (f"kubernetes (asked for): namespace {api.namespace} of the cluster at {api.server} ({where}); "
                     f"images pushed to {registry}{pulled_with}")


def _default_kubeconfig(settings: Settings) -> Path:
    """As kubectl: the first file of $KUBECONFIG, else ~/.kube/config."""
    listed = [part for part in (settings.environ.get("KUBECONFIG") or "").split(":") if part]
    return Path(listed[0]).expanduser() if listed else settings.home / ".kube" / "config"
