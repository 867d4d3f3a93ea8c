"""The Kubernetes runtime's API wrapper, every call over HTTP against tests/kube_fake_api.py.

No cluster runs on these machines; the fake implements the few endpoints' documented
semantics (server-side apply, resourceVersion, watch events, 404/409/410), and the wrapper
is used exactly as the runtime will use it: built from a kubeconfig file, nothing mocked.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, AsyncIterator, Iterator

import httpx
import pytest
import yaml

from kube_fake_api import FakeKubernetesApi
from truss_cli.controlplane.runtimes.kubernetes.api import KubernetesApi, PodState
from truss_cli.errors import TrussError

TOKEN = "test-token"
LABELS = {"app.kubernetes.io/managed-by": "truss-cli", "truss.dev/deployment-id": "d1"}


@pytest.fixture
def fake() -> Iterator[FakeKubernetesApi]:
    server = FakeKubernetesApi(namespaces=("truss",), token=TOKEN)
    yield server
    server.close()


def kubeconfig(tmp_path: Path, server: str, token: str = TOKEN) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "fake",
        "clusters": [{"name": "fake", "cluster": {"server": server}}],
        "users": [{"name": "truss", "user": {"token": token}}],
        "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "truss", "namespace": "truss"}}],
    }))
    return path


@pytest.fixture
def api(fake: FakeKubernetesApi, tmp_path: Path) -> Iterator[KubernetesApi]:
    with KubernetesApi.from_kubeconfig(kubeconfig(tmp_path, fake.url), namespace="truss") as client:
        yield client


def deployment(name: str = "dep-d1", image: str = "registry/model@sha256:aa", replicas: int = 1) -> dict:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "labels": dict(LABELS)},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"truss.dev/deployment-id": "d1"}},
            "template": {"metadata": {"labels": dict(LABELS)}, "spec": {"containers": [{"name": "model", "image": image}]}},
        },
    }


def pod(name: str, ip: str, ready: bool, labels: dict = LABELS, **status: Any) -> dict:
    return {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": dict(labels)},
        "spec": {"containers": [{"name": "model", "image": "i"}]},
        "status": {"phase": "Running", "podIP": ip,
                   "conditions": [{"type": "Ready", "status": "True" if ready else "False"}], **status},
    }


def endpoint_slice(name: str, endpoints: dict[str, bool | None], labels: dict = LABELS) -> dict:
    """`endpoints`: address -> ready (None: the condition is left out, which means ready)."""
    return {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
        "metadata": {"name": name, "labels": {**labels, "kubernetes.io/service-name": "dep-d1"}},
        "endpoints": [{"addresses": [ip], "conditions": {} if ready is None else {"ready": ready}} for ip, ready in endpoints.items()],
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
    }


# ---- apply / get / delete ----

def test_apply_creates_then_a_reapply_changes_nothing(api: KubernetesApi, fake: FakeKubernetesApi) -> None:
    assert api.get("Deployment", "dep-d1") is None
    created = api.apply(deployment())
    assert created["metadata"]["uid"] and created["spec"]["template"]["spec"]["containers"][0]["image"] == "registry/model@sha256:aa"

    again = api.apply(deployment())
    assert again["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]
    assert api.get("Deployment", "dep-d1")["metadata"]["uid"] == created["metadata"]["uid"]

    changed = api.apply(deployment(image="registry/model@sha256:bb"))
    assert changed["metadata"]["resourceVersion"] != created["metadata"]["resourceVersion"]
    assert api.get("Deployment", "dep-d1")["spec"]["template"]["spec"]["containers"][0]["image"] == "registry/model@sha256:bb"
    patches = [r for r in fake.requests if r["method"] == "PATCH"]
    assert {(r["params"]["fieldManager"], r["params"].get("force")) for r in patches} == {("truss-cli", "true")}


def test_apply_takes_back_a_field_another_manager_changed(api: KubernetesApi, fake: FakeKubernetesApi) -> None:
    """A person's `kubectl apply` of a different image: a plain apply conflicts, the runtime's forced one wins."""
    api.apply(deployment())
    url = f"{fake.url}/apis/apps/v1/namespaces/truss/deployments/dep-d1"
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/apply-patch+yaml"}
    theirs = deployment(image="someone/else:latest")
    taken = httpx.patch(url, params={"fieldManager": "kubectl", "force": "true"}, headers=headers, content=yaml.safe_dump(theirs))
    assert taken.status_code == 200
    refused = httpx.patch(url, params={"fieldManager": "truss-cli"}, headers=headers, content=yaml.safe_dump(deployment()))
    assert refused.status_code == 409 and refused.json()["reason"] == "Conflict"

    api.apply(deployment())
    assert api.get("Deployment", "dep-d1")["spec"]["template"]["spec"]["containers"][0]["image"] == "registry/model@sha256:aa"


def test_delete_twice_is_fine(api: KubernetesApi) -> None:
    api.apply(deployment())
    assert api.delete("Deployment", "dep-d1") is True
    assert api.delete("Deployment", "dep-d1") is False
    assert api.get("Deployment", "dep-d1") is None


def test_an_unknown_kind_or_api_version_names_what_is_handled(api: KubernetesApi) -> None:
    with pytest.raises(TrussError, match="does not handle the kind 'ConfigMap'; it handles Deployment, Service"):
        api.get("ConfigMap", "x")
    with pytest.raises(TrussError, match="apiVersion 'apps/v1beta1'; the runtime writes apps/v1"):
        api.apply({**deployment(), "apiVersion": "apps/v1beta1"})


# ---- scale ----

def test_scale_to_three_then_to_zero(api: KubernetesApi) -> None:
    api.apply(deployment(replicas=1))
    assert api.read_scale("dep-d1").wanted == 1
    assert api.scale("dep-d1", 3).wanted == 3
    assert api.get("Deployment", "dep-d1")["spec"]["replicas"] == 3
    assert api.scale("dep-d1", 0).wanted == 0
    assert api.read_scale("dep-d1").wanted == 0


def test_a_reapply_without_replicas_keeps_the_count_scale_set(api: KubernetesApi) -> None:
    """The contract the runtime relies on: replicas belong to `scale`, the re-applied spec leaves them out."""
    unscaled = deployment()
    del unscaled["spec"]["replicas"]
    api.apply(unscaled)
    api.scale("dep-d1", 3)
    api.apply(unscaled)
    assert api.read_scale("dep-d1").wanted == 3
    api.apply(deployment(replicas=1))  # a spec that does name a count wins (force): so never send one
    assert api.read_scale("dep-d1").wanted == 1


def test_scale_refuses_a_negative_count_and_names_a_missing_deployment(api: KubernetesApi) -> None:
    api.apply(deployment())
    with pytest.raises(TrussError, match="must be 0 or more"):
        api.scale("dep-d1", -1)
    with pytest.raises(TrussError, match="No Deployment dep-nope in namespace truss"):
        api.scale("dep-nope", 2)
    with pytest.raises(TrussError, match="No Deployment dep-nope"):
        api.read_scale("dep-nope")


# ---- pods and logs ----

def test_pods_report_phase_readiness_ip_restarts_and_why_a_container_ended(api: KubernetesApi, fake: FakeKubernetesApi) -> None:
    fake.put("pods", pod("dep-d1-a", "10.0.0.1", ready=True))
    crashed = {"image": "i", "imageID": "", "ready": False, "restartCount": 4, "state": {"waiting": {"reason": "CrashLoopBackOff"}},
               "lastState": {"terminated": {"reason": "OOMKilled", "exitCode": 137}}}
    fake.put("pods", pod("dep-d1-b", "10.0.0.2", ready=False, containerStatuses=[{"name": "model", **crashed}]))
    fake.put("pods", pod("other", "10.0.0.3", ready=True, labels={"truss.dev/deployment-id": "d2"}))

    assert api.pods({"truss.dev/deployment-id": "d1"}) == [
        PodState("dep-d1-a", "Running", True, "10.0.0.1", 0, None, None, LABELS, images=("i",)),
        PodState("dep-d1-b", "Running", False, "10.0.0.2", 4, "OOMKilled", "CrashLoopBackOff", LABELS, images=("i",)),
    ]


def test_pods_carry_their_annotations_and_say_when_they_are_terminating(api: KubernetesApi, fake: FakeKubernetesApi) -> None:
    """The runtime's claim on a pod is an annotation; a terminating pod is never claimed."""
    claimed = pod("dep-d1-a", "10.0.0.1", ready=True)
    claimed["metadata"].update(annotations={"truss.dev/replica-id": "r1"}, deletionTimestamp="2026-01-01T00:00:00Z")
    fake.put("pods", claimed)
    (state,) = api.pods({"truss.dev/deployment-id": "d1"})
    assert state.annotations == {"truss.dev/replica-id": "r1"} and state.deleting


def test_read_log_gives_timed_lines_since_a_time_and_follows(api: KubernetesApi, fake: FakeKubernetesApi) -> None:
    fake.put("pods", pod("dep-d1-a", "10.0.0.1", ready=True))
    now = datetime.now(timezone.utc)
    fake.append_log("dep-d1-a", "old line", at=now - timedelta(hours=2))
    fake.append_log("dep-d1-a", "loading", at=now - timedelta(seconds=30))
    assert [line.text for line in api.read_log("dep-d1-a")] == ["old line", "loading"]
    lines = list(api.read_log("dep-d1-a", since=now - timedelta(minutes=1)))
    assert [line.text for line in lines] == ["loading"]
    assert abs(lines[0].at - (now - timedelta(seconds=30))) < timedelta(milliseconds=1)

    following = api.read_log("dep-d1-a", since=now - timedelta(minutes=1), follow=True)
    assert next(following).text == "loading"
    fake.append_log("dep-d1-a", "ready")
    assert next(following).text == "ready"
    fake.end_log("dep-d1-a")
    assert list(following) == []

    with pytest.raises(TrussError, match="No pod gone in namespace truss"):
        api.read_log("gone")


# ---- watching EndpointSlices ----

async def next_snapshot(watch: AsyncIterator[dict]) -> dict:
    """The next picture, as {slice name: its ready addresses}."""
    slices = await asyncio.wait_for(watch.__anext__(), timeout=20)
    return {name: state.addresses for name, state in slices.items()}


def test_watch_says_whose_each_slice_is_and_which_pod_each_ready_address_is(api: KubernetesApi, fake: FakeKubernetesApi) -> None:
    """The gateway routes a deployment's ready pods by the slice's deployment label, and can
    name a pod it has not heard of from the control plane by the endpoint's targetRef."""
    terminating = endpoint_slice("dep-d1-abc", {"10.0.0.1": True, "10.0.0.2": False, "10.0.0.3": True})
    terminating["endpoints"][0]["targetRef"] = {"kind": "Pod", "name": "dep-d1-7f9c2", "namespace": "truss"}
    terminating["endpoints"][1]["conditions"] = {"ready": False, "serving": True, "terminating": True}
    fake.put("endpointslices", terminating)

    async def scenario() -> None:
        watch = api.watch_endpoint_slices({"app.kubernetes.io/managed-by": "truss-cli"})
        try:
            (state,) = (await asyncio.wait_for(watch.__anext__(), timeout=20)).values()
        finally:
            await watch.aclose()
        assert state.deployment_id == "d1"
        assert [(e.address, e.pod) for e in state.ready] == [("10.0.0.1", "dep-d1-7f9c2"), ("10.0.0.3", None)]

    asyncio.run(scenario())


def test_watch_sees_slices_change(api: KubernetesApi, fake: FakeKubernetesApi) -> None:
    fake.put("endpointslices", endpoint_slice("dep-d1-abc", {"10.0.0.1": True, "10.0.0.2": False}))
    fake.put("endpointslices", endpoint_slice("other-xyz", {"10.9.9.9": True}, labels={"truss.dev/deployment-id": "d2"}))

    async def scenario() -> None:
        watch = api.watch_endpoint_slices({"truss.dev/deployment-id": "d1"})
        try:
            assert await next_snapshot(watch) == {"dep-d1-abc": ("10.0.0.1",)}
            fake.put("endpointslices", endpoint_slice("dep-d1-abc", {"10.0.0.1": True, "10.0.0.2": None}))
            assert await next_snapshot(watch) == {"dep-d1-abc": ("10.0.0.1", "10.0.0.2")}
            fake.put("endpointslices", endpoint_slice("other-xyz", {}, labels={"truss.dev/deployment-id": "d2"}))
            fake.put("endpointslices", endpoint_slice("dep-d1-def", {"10.0.0.3": True}))
            assert await next_snapshot(watch) == {"dep-d1-abc": ("10.0.0.1", "10.0.0.2"), "dep-d1-def": ("10.0.0.3",)}
            fake.remove("endpointslices", "dep-d1-abc")
            assert await next_snapshot(watch) == {"dep-d1-def": ("10.0.0.3",)}
        finally:
            await watch.aclose()

    asyncio.run(scenario())


def test_a_dropped_watch_resumes_from_its_last_version_without_missing_a_change(api: KubernetesApi, fake: FakeKubernetesApi) -> None:
    fake.put("endpointslices", endpoint_slice("dep-d1-abc", {"10.0.0.1": True}))

    async def scenario() -> None:
        watch = api.watch_endpoint_slices({"truss.dev/deployment-id": "d1"})
        try:
            assert await next_snapshot(watch) == {"dep-d1-abc": ("10.0.0.1",)}
            seen = fake.put("endpointslices", endpoint_slice("dep-d1-abc", {"10.0.0.1": True, "10.0.0.2": True}))
            assert await next_snapshot(watch) == {"dep-d1-abc": ("10.0.0.1", "10.0.0.2")}

            fake.hold_watches(True)
            fake.drop_watches()  # the connection ends; the change below happens while nobody watches
            fake.put("endpointslices", endpoint_slice("dep-d1-abc", {"10.0.0.2": True}))
            fake.hold_watches(False)
            assert await next_snapshot(watch) == {"dep-d1-abc": ("10.0.0.2",)}
        finally:
            await watch.aclose()
        watches = fake.watch_requests("endpointslices")
        assert len(watches) >= 2 and watches[-1]["resourceVersion"] == seen["metadata"]["resourceVersion"]
        assert len(fake.list_requests("endpointslices")) == 1  # resumed, not listed again

    asyncio.run(scenario())


def test_a_watch_cut_off_mid_stream_resumes_from_its_last_version(api: KubernetesApi, fake: FakeKubernetesApi) -> None:
    fake.put("endpointslices", endpoint_slice("dep-d1-abc", {"10.0.0.1": True}))

    async def scenario() -> None:
        watch = api.watch_endpoint_slices({"truss.dev/deployment-id": "d1"})
        try:
            assert await next_snapshot(watch) == {"dep-d1-abc": ("10.0.0.1",)}
            fake.put("endpointslices", endpoint_slice("dep-d1-abc", {"10.0.0.1": True, "10.0.0.2": False}))
            seen = fake.put("endpointslices", endpoint_slice("dep-d1-abc", {"10.0.0.1": True, "10.0.0.2": True}))
            assert await next_snapshot(watch) == {"dep-d1-abc": ("10.0.0.1", "10.0.0.2")}  # the watch is connected
            fake.hold_watches(True)
            fake.drop_watches(abruptly=True)  # the client sees a broken connection, not an end
            fake.put("endpointslices", endpoint_slice("dep-d1-abc", {"10.0.0.1": False, "10.0.0.5": True}))
            fake.hold_watches(False)
            assert await next_snapshot(watch) == {"dep-d1-abc": ("10.0.0.5",)}
            assert fake.watch_requests("endpointslices")[-1]["resourceVersion"] == seen["metadata"]["resourceVersion"]
        finally:
            await watch.aclose()
        assert len(fake.list_requests("endpointslices")) == 1

    asyncio.run(scenario())


def test_a_watch_too_far_behind_lists_again(api: KubernetesApi, fake: FakeKubernetesApi) -> None:
    fake.put("endpointslices", endpoint_slice("dep-d1-abc", {"10.0.0.1": True}))

    async def scenario() -> None:
        watch = api.watch_endpoint_slices({"truss.dev/deployment-id": "d1"})
        try:
            assert await next_snapshot(watch) == {"dep-d1-abc": ("10.0.0.1",)}
            fake.put("endpointslices", endpoint_slice("dep-d1-abc", {"10.0.0.1": True, "10.0.0.3": True}))
            assert await next_snapshot(watch) == {"dep-d1-abc": ("10.0.0.1", "10.0.0.3")}  # the watch is connected
            fake.hold_watches(True)
            fake.drop_watches()
            fake.put("endpointslices", endpoint_slice("dep-d1-abc", {"10.0.0.1": True, "10.0.0.4": True}))
            fake.compact()  # the server forgot the history: resuming answers 410 Gone
            fake.hold_watches(False)
            assert await next_snapshot(watch) == {"dep-d1-abc": ("10.0.0.1", "10.0.0.4")}
        finally:
            await watch.aclose()
        assert len(fake.list_requests("endpointslices")) == 2

    asyncio.run(scenario())


# ---- errors a user reads ----

def test_a_forbidden_verb_names_it_and_the_resource(api: KubernetesApi, fake: FakeKubernetesApi) -> None:
    fake.forbid("patch", "deployments")
    with pytest.raises(TrussError) as refused:
        api.apply(deployment())
    assert "Role lacks the verb patch (and create) on deployments.apps" in refused.value.message
    assert "truss server manifests" in (refused.value.hint or "")

    fake.forbid("list", "pods")
    with pytest.raises(TrussError, match=r"Role lacks the verb list on pods\."):
        api.pods(LABELS)

    fake.forbid("patch", "deployments/scale")
    with pytest.raises(TrussError, match="verb patch on deployments.apps/scale"):
        api.scale("dep-d1", 2)

    fake.forbid("watch", "endpointslices")  # listing is allowed, watching is not: the iterator ends with the error

    async def watch_once() -> None:
        watch = api.watch_endpoint_slices(LABELS)
        try:
            assert await next_snapshot(watch) == {}
            await next_snapshot(watch)
        finally:
            await watch.aclose()

    with pytest.raises(TrussError, match="verb watch on endpointslices.discovery.k8s.io"):
        asyncio.run(watch_once())


def test_a_missing_namespace_says_to_create_it(fake: FakeKubernetesApi, tmp_path: Path) -> None:
    with KubernetesApi.from_kubeconfig(kubeconfig(tmp_path, fake.url), namespace="models") as api:
        with pytest.raises(TrussError) as missing:
            api.apply(deployment())
    assert missing.value.message.startswith("The namespace models does not exist")
    assert missing.value.hint == "Create it: kubectl create namespace models"


def test_a_cluster_without_the_api_says_so(tmp_path: Path) -> None:
    older = FakeKubernetesApi(unserved=("poddisruptionbudgets",), token=TOKEN)
    try:
        with KubernetesApi.from_kubeconfig(kubeconfig(tmp_path, older.url), namespace="truss") as api:
            budget = {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "dep-d1"},
                      "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"truss.dev/deployment-id": "d1"}}}}
            with pytest.raises(TrussError, match=r"does not serve poddisruptionbudgets.policy \(policy/v1\)"):
                api.apply(budget)
    finally:
        older.close()


def test_connection_problems_read_well(fake: FakeKubernetesApi, tmp_path: Path) -> None:
    with KubernetesApi.from_kubeconfig(kubeconfig(tmp_path, fake.url, token="wrong"), namespace="truss") as api:
        with pytest.raises(TrussError, match="rejected the credentials"):
            api.get("Deployment", "dep-d1")
    closed = FakeKubernetesApi()
    closed.close()
    with KubernetesApi.from_kubeconfig(kubeconfig(tmp_path, closed.url), namespace="truss") as api:
        with pytest.raises(TrussError, match=f"Cannot reach the Kubernetes API at {closed.url}"):
            api.get("Deployment", "dep-d1")
    with pytest.raises(TrussError, match="No kubeconfig at"):
        KubernetesApi.from_kubeconfig(tmp_path / "nope", namespace="truss")
    with pytest.raises(TrussError, match="Context 'staging' not found"):
        KubernetesApi.from_kubeconfig(kubeconfig(tmp_path, fake.url), namespace="truss", context="staging")
    (tmp_path / "broken").write_text("clusters: [\n")
    with pytest.raises(TrussError, match="Cannot use the kubeconfig .*broken: while parsing"):
        KubernetesApi.from_kubeconfig(tmp_path / "broken", namespace="truss")
    with pytest.raises(TrussError, match="Not inside a Kubernetes pod"):
        KubernetesApi.in_cluster(service_account_dir=tmp_path / "no-account")
