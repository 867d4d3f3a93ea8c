"""A fake Kubernetes cluster whose pods are real Docker containers (no tests of its own).

No cluster runs on these machines (docs/kubernetes.md), so the runtime is tested end to end
against `kube_fake_api.FakeKubernetesApi` plus the two parts of a cluster it relies on, each
as small as the runtime's use of it:

- a Deployment controller with its ReplicaSets (kept in this process, not in the API): one
  ReplicaSet per template (its hash is the pods' `pod-template-hash` label); each makes its
  count of pods (named `<deployment>-<5 hex>`, the template's labels, annotations and spec).
  A changed template rolls as `RollingUpdate` does (`_roll`): the new ReplicaSet grows while
  all of them together stay within `replicas + maxSurge`, old ones shrink (their not-ready
  pods first) while the ready pods stay at least `replicas - maxUnavailable`; a `scale`
  during a rollout is spread over the ReplicaSets in proportion to their sizes, the rest to
  the largest (what the Deployment controller's proportional scaling does). A ReplicaSet
  scaling down removes pods in Kubernetes' order: not running before running, not ready
  before ready, then the lowest `controller.kubernetes.io/pod-deletion-cost`, then the
  newest. Pods of a deleted Deployment are deleted (what ownerReferences do). A test makes the API server refuse pod
  creation (`refuse_pods`, as Pod Security admission or a ResourceQuota would): no pod is
  made and the Deployment gets the `ReplicaFailure` condition (`FailedCreate`, the refusal's
  message) that the real controllers set, removed once pods may be created again.
- a kubelet: each pod runs as a container of the pod's image, pulled BY DIGEST from the
  registry the reference names (tests/registry_support.py's local one), with the pod's
  environment (`fieldRef: metadata.name` included), its command, args and working directory,
  its Secret volumes (files of the Secret, 0400, owned by the pod's user, mounted read-only)
  and its emptyDirs (tmpfs), a read-only root filesystem when the pod asks for one, as the
  pod's user, within the container's `resources.limits` (memory without swap, and CPU: a
  container that allocates past its memory limit is OOM-killed by the kernel, as on a node).
  The container's bridge IP is the pod IP (reachable from the host on Linux), the Ready condition follows the readiness
  probe's route, a container that exits leaves the pod in CrashLoopBackOff (not restarted),
  a failed pull in ImagePullBackOff, and the container's log is the pod's log. A deleted
  pod's container is stopped (SIGTERM, as the kubelet does) and removed. A test can make the
  kubelet report a pod IP nothing answers on (`misreport_pod_ips`: the probes still reach the
  container, so the pod is Ready), as a cluster whose pod network is not routed to the
  control plane's machine looks from there.
- graceful termination: a pod is deleted as on a real cluster (the API's `graceful_pods`):
  it stays, with a deletionTimestamp (so its endpoint says terminating at once), while the
  kubelet runs the container's `lifecycle.preStop.exec` hook in it (the server keeps serving
  meanwhile), then SIGTERMs it and waits what is left of the pod's grace period (at least
  2 s) for it to exit (the model server drains); then the kubelet removes the pod. A hook
  that fails is recorded in `pre_stop_failures` and the pod stops anyway, as on a node. The ReplicaSet-like controller does not count terminating pods (it makes
  their replacements at once) and deletes gracefully too.
- an EndpointSlice controller: one slice per Service with a selector (named `<service>-<5
  hex>`, the Service's labels plus `kubernetes.io/service-name`), one endpoint per selected
  pod that has an IP, with `targetRef` to the pod and the conditions as Kubernetes sets them
  when `publishNotReadyAddresses` is false: `serving` is the pod's Ready condition,
  `terminating` is its deletionTimestamp, `ready` is serving and not terminating. A slice
  is written only when it changes (so a watch sees real changes only), and deleted with its
  Service.

Not simulated: scheduling (and with it resource requests), liveness/startup probes,
minReadySeconds, percentages in maxSurge/maxUnavailable, revision history.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import math
import os
import secrets as _random
import shutil
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

import docker
import docker.errors
import httpx

from kube_fake_api import FakeKubernetesApi
from truss_cli.image.registry import pull_by_digest

DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"
TEMPLATE_HASH = "pod-template-hash"
SERVICE_NAME = "kubernetes.io/service-name"
TICK_SECONDS = 0.25


class FakeCluster:
    def __init__(self, api: FakeKubernetesApi, client: docker.APIClient, work_dir: Path, namespace: str = "truss") -> None:
        self.api, self.client, self.namespace = api, client, namespace
        self.work_dir = work_dir
        self.label = f"truss-test-fake-kubelet-{_random.token_hex(4)}"  # every container this cluster made
        self.containers: dict[str, str] = {}  # pod name -> container id
        self.log_lines: dict[str, int] = {}  # pod name -> lines of its container's log copied
        self.pods_created = 0
        self.terminating: set[str] = set()  # pods whose container the kubelet is stopping
        self.pre_stop_failures: dict[str, str] = {}  # pod -> why its preStop hook failed (FailedPreStopHook)
        self.stops: dict[str, list[str]] = {}  # pod -> what its kubelet did, in order ("preStop", "preStop done", "SIGTERM")
        self.slice_names: dict[str, str] = {}  # Service name -> its EndpointSlice's
        self.refusal: Optional[str] = None  # why the API server refuses pod creation now (refuse_pods)
        self.reported_ip: Optional[str] = None  # the pod IP pods started now report (misreport_pod_ips)
        self.reported_ips: dict[str, str] = {}  # pod name -> the IP it reports instead of its container's
        # Deployment name -> its ReplicaSets: template hash -> ReplicaSet (`_roll`).
        self.replica_sets: dict[str, dict[str, ReplicaSet]] = {}
        self._made_sets = 0  # a ReplicaSet's age (which is older)
        api.graceful_pods = True  # a kubelet finishes deleted pods now
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fake-cluster", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        for container in self.client.containers(all=True, filters={"label": self.label}):
            try:
                self.client.remove_container(container["Id"], force=True)
            except docker.errors.APIError:
                pass
        for image in self.client.images(name=self.label):
            for tag in image.get("RepoTags") or []:
                try:
                    self.client.remove_image(tag)
                except docker.errors.APIError:
                    pass

    def pods(self) -> list[dict]:
        with self.api.lock:
            return [copy.deepcopy(o) for (plural, ns, _), o in sorted(self.api.objects.items())
                    if plural == "pods" and ns == self.namespace]

    def container_of(self, pod: str) -> Optional[str]:
        return self.containers.get(pod)

    def refuse_pods(self, reason: Optional[str]) -> None:
        """From now on the API server refuses to create pods, saying `reason` (e.g. `violates
        PodSecurity "restricted:latest": ...`); None creates them again."""
        self.refusal = reason

    def misreport_pod_ips(self, address: Optional[str]) -> None:
        """Pods started from now on report `address` as their IP (None: their own)."""
        self.reported_ip = address

    # ---- the loop ----

    def _run(self) -> None:
        while not self._stop.wait(TICK_SECONDS):
            try:
                self._control()
                self._kubelet()
                self._endpoint_slices()
            except Exception as exc:  # a test's failure shows in what it observes; keep going
                print(f"fake cluster: {type(exc).__name__}: {exc}")

    def _objects(self, plural: str) -> list[dict]:
        with self.api.lock:
            return [copy.deepcopy(o) for (p, ns, _), o in sorted(self.api.objects.items()) if p == plural and ns == self.namespace]

    def _control(self) -> None:
        deployments = {d["metadata"]["name"]: d for d in self._objects("deployments")}
        pods = self._objects("pods")
        for name, deployment in deployments.items():
            selector = deployment["spec"]["selector"]["matchLabels"]
            mine = [p for p in pods if all(p["metadata"].get("labels", {}).get(k) == v for k, v in selector.items())
                    and not _terminating(p)]  # a ReplicaSet counts only pods that are not terminating
            sets = self._roll(name, deployment, mine)
            refused = None
            for template_hash, replica_set in sets.items():
                own = [p for p in mine if p["metadata"].get("labels", {}).get(TEMPLATE_HASH) == template_hash]
                if replica_set.replicas > len(own) and self.refusal:
                    refused = self.refusal
                for _ in range(replica_set.replicas - len(own) if not self.refusal else 0):
                    self._create_pod(name, replica_set.template, template_hash)
                if len(own) > replica_set.replicas:
                    for pod in sorted(own, key=_deletion_rank)[: len(own) - replica_set.replicas]:
                        self.api.terminate_pod(pod["metadata"]["name"], self.namespace)
            # The ReplicaSet's condition, which the Deployment controller copies onto the Deployment.
            self._set_replica_failure(name, f'pods "{name}-" is forbidden: {refused}' if refused else None)
            for pod in mine:  # a pod of no ReplicaSet (none owns it any more) goes
                if pod["metadata"].get("labels", {}).get(TEMPLATE_HASH) not in sets:
                    self.api.terminate_pod(pod["metadata"]["name"], self.namespace)
        for gone in set(self.replica_sets) - set(deployments):
            del self.replica_sets[gone]
        for pod in pods:  # ownerReferences: a deleted Deployment's pods go
            owner = pod["metadata"].get("annotations", {}).get("test.fake/owner")
            if owner and owner not in deployments and not _terminating(pod):
                self.api.terminate_pod(pod["metadata"]["name"], self.namespace)

    def _roll(self, name: str, deployment: dict, pods: list[dict]) -> dict[str, "ReplicaSet"]:
        """The Deployment controller: each ReplicaSet's count for `deployment` now, given its
        (not terminating) `pods`. Its template's ReplicaSet is the new one; the others are old.
        One step per tick, as the controller's syncs are: grow the new one within the surge,
        then shrink the old ones within what may be unavailable."""
        template = deployment["spec"]["template"]
        wanted = int(deployment["spec"].get("replicas", 1))
        rolling = deployment["spec"].get("strategy", {}).get("rollingUpdate", {})
        surge, unavailable = int(rolling.get("maxSurge", 1)), int(rolling.get("maxUnavailable", 0))
        if surge == 0 and unavailable == 0:
            unavailable = 1  # what the API server's validation forces
        sets = self.replica_sets.setdefault(name, {})
        new_hash = _template_hash(template)
        if new_hash not in sets:
            self._made_sets += 1
            # The first ReplicaSet of a Deployment starts at its count; a later one at zero, and rolls.
            sets[new_hash] = ReplicaSet(template=copy.deepcopy(template), replicas=0 if sets else wanted,
                                        desired=wanted, age=self._made_sets)
        new = sets[new_hash]
        ready = {h: 0 for h in sets}
        for pod in pods:
            h = pod["metadata"].get("labels", {}).get(TEMPLATE_HASH)
            if h in ready and _ready(pod):
                ready[h] += 1
        old = sorted((h for h in sets if h != new_hash and sets[h].replicas > 0), key=lambda h: sets[h].age)
        total = sum(s.replicas for s in sets.values())
        if not old:
            new.replicas = wanted
        elif any(sets[h].desired != wanted for h in [new_hash, *old] if sets[h].replicas > 0):
            # A scale during a rollout: spread over the ReplicaSets by size, the rest to the largest.
            allowed = wanted + surge if wanted > 0 else 0
            to_add = allowed - total
            active = [h for h in [new_hash, *old] if sets[h].replicas > 0]
            # Largest first; on a tie the newer when growing, the older when shrinking.
            active.sort(key=lambda h: (-sets[h].replicas, -sets[h].age if to_add > 0 else sets[h].age))
            added = 0
            for h in active:
                share = int(sets[h].replicas * to_add / total) if total else 0
                sets[h].replicas += share
                added += share
            sets[active[0]].replicas = max(0, sets[active[0]].replicas + to_add - added)
        else:
            grow = min(wanted + surge - total, wanted - new.replicas)
            if grow > 0:
                new.replicas += grow
            total = sum(s.replicas for s in sets.values())
            minimum = wanted - unavailable
            room = total - minimum - (new.replicas - min(ready[new_hash], new.replicas))
            may_shrink = room > 0
            for h in old if may_shrink else ():  # old pods that are not ready go first: they serve nobody
                cut = min(max(room, 0), max(sets[h].replicas - ready[h], 0))
                sets[h].replicas -= cut
                room -= cut
            spare = sum(min(ready[h], sets[h].replicas) for h in sets) - minimum if may_shrink else 0
            for h in old:  # then ready ones, while enough stay ready
                cut = min(max(spare, 0), sets[h].replicas)
                sets[h].replicas -= cut
                spare -= cut
        for replica_set in sets.values():
            replica_set.desired = wanted
        counted = {p["metadata"].get("labels", {}).get(TEMPLATE_HASH) for p in pods}
        for h in [h for h in sets if h != new_hash and sets[h].replicas == 0 and h not in counted]:
            del sets[h]  # scaled down and empty (no revision history here)
        return sets

    def _set_replica_failure(self, deployment: str, message: Optional[str]) -> None:
        with self.api.lock:
            key = ("deployments", self.namespace, deployment)
            current = self.api.objects.get(key)
            if current is None:
                return
            before = current.get("status", {}).get("conditions", [])
            if [c.get("message") for c in before if c.get("type") == "ReplicaFailure"] == ([message] if message else []):
                return  # unchanged (a condition's times change only with it)
            conditions = [c for c in before if c.get("type") != "ReplicaFailure"]
            if message:
                conditions.append({"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate", "message": message,
                                   "lastUpdateTime": _now(), "lastTransitionTime": _now()})
            updated = copy.deepcopy(current)
            updated.setdefault("status", {})["conditions"] = conditions
            self.api._store(key, updated, created=False)

    def _create_pod(self, deployment_name: str, template: dict, template_hash: str) -> None:
        self.pods_created += 1
        name = f"{deployment_name}-{_random.token_hex(3)[:5]}"
        metadata = copy.deepcopy(template["metadata"])
        metadata["name"] = name
        metadata.setdefault("labels", {})[TEMPLATE_HASH] = template_hash
        metadata.setdefault("annotations", {})["test.fake/owner"] = deployment_name
        self.api.put("pods", {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": copy.deepcopy(template["spec"]),
                              "status": {"phase": "Pending"}}, self.namespace)

    def _kubelet(self) -> None:
        pods = {p["metadata"]["name"]: p for p in self._objects("pods")}
        for name in list(self.containers):
            if name not in pods and name not in self.terminating:  # removed at once (by a test): stop and remove
                container = self.containers.pop(name, None)
                if container is None:
                    continue
                threading.Thread(target=self._remove_container, args=(name, container), daemon=True).start()
        for name, pod in pods.items():
            if not pod.get("spec", {}).get("containers"):
                continue
            if _terminating(pod) and name not in self.terminating:
                self.terminating.add(name)
                grace = int(pod["metadata"].get("deletionGracePeriodSeconds", 30))
                hook = pod["spec"]["containers"][0].get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command")
                threading.Thread(target=self._terminate, args=(name, self.containers.get(name, ""), grace, hook),
                                 daemon=True).start()
            elif name not in self.containers and not _terminating(pod):
                self._start_pod(pod)
            elif name not in self.terminating:
                self._observe(pod)

    def _terminate(self, pod: str, container: str, grace: int, pre_stop: Optional[list[str]]) -> None:
        """The preStop hook, then SIGTERM and what is left of the grace period (at least 2 s, as
        the kubelet gives) for the container to exit, then the pod goes."""
        started = time.monotonic()
        steps = self.stops.setdefault(pod, [])
        if container and pre_stop:
            steps.append("preStop")
            self._run_pre_stop(pod, container, pre_stop, grace)
            steps.append("preStop done")
        try:
            if container:
                steps.append("SIGTERM")
                self.client.stop(container, timeout=max(2, math.ceil(grace - (time.monotonic() - started))))
        except docker.errors.APIError:
            pass
        self.containers.pop(pod, None)
        self.api.remove("pods", pod, self.namespace)
        self.terminating.discard(pod)
        self._remove_container(pod, container)

    def _run_pre_stop(self, pod: str, container: str, command: list[str], grace: int) -> None:
        """Run the hook in the container as the kubelet does (an exec, as the container's user),
        within the grace period; a hook that fails or cannot start is noted, and the pod stops
        anyway (a FailedPreStopHook event on a real node)."""
        def run() -> None:
            try:
                exec_id = self.client.exec_create(container, command)["Id"]
                output = self.client.exec_start(exec_id)
                code = self.client.exec_inspect(exec_id).get("ExitCode")
                if code:
                    self.pre_stop_failures[pod] = f"exit {code}: {output.decode(errors='replace').strip()[-200:]}"
            except docker.errors.APIError as exc:
                self.pre_stop_failures[pod] = str(exc)

        hook = threading.Thread(target=run, daemon=True)
        hook.start()
        hook.join(grace)

    def _endpoint_slices(self) -> None:
        services = {s["metadata"]["name"]: s for s in self._objects("services") if s.get("spec", {}).get("selector")}
        slices = {s["metadata"]["name"]: s for s in self._objects("endpointslices")}
        pods = self._objects("pods")
        for name, service in services.items():
            slice_name = self.slice_names.setdefault(name, f"{name}-{_random.token_hex(3)[:5]}")
            wanted = _endpoint_slice(slice_name, service, pods, self.namespace)
            current = slices.get(slice_name)
            if current is None or any(current.get(k) != wanted[k] for k in ("endpoints", "ports")) \
                    or current["metadata"].get("labels") != wanted["metadata"]["labels"]:
                self.api.put("endpointslices", wanted, self.namespace)
        for slice_name, endpoint_slice in slices.items():
            if endpoint_slice["metadata"].get("labels", {}).get(SERVICE_NAME) not in services:
                self.api.remove("endpointslices", slice_name, self.namespace)

    def slices(self) -> list[dict]:
        return self._objects("endpointslices")

    def _remove_container(self, pod: str, container: str) -> None:
        try:
            if container:
                self.client.stop(container, timeout=10)
                self.client.remove_container(container, force=True)
            self.client.remove_image(f"{self.label}:{pod}")
        except docker.errors.APIError:
            pass

    def _start_pod(self, pod: dict) -> None:
        name = pod["metadata"]["name"]
        spec = pod["spec"]
        container = spec["containers"][0]
        try:
            image_id = pull_by_digest(self.client, container["image"])
            # The node's own name for what it pulled (a node's image store is not this
            # machine's): the control plane may untag its images while the pod runs.
            self.client.tag(image_id, self.label, name)
        except Exception as exc:
            self._set_status(name, {"phase": "Pending", "containerStatuses": [
                {"name": container["name"], "ready": False, "restartCount": 0, "image": container["image"], "imageID": "",
                 "state": {"waiting": {"reason": "ImagePullBackOff", "message": str(exc)}}}]})
            self.containers[name] = ""  # not tried again
            return
        security = spec.get("securityContext", {})
        user = security.get("runAsUser")
        group = security.get("runAsGroup") or security.get("fsGroup")
        environment = {}
        for variable in container.get("env", []):
            if "value" in variable:
                environment[variable["name"]] = variable["value"]
            elif variable.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.name":
                environment[variable["name"]] = name
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        binds, tmpfs = {}, {}
        for mount in container.get("volumeMounts", []):
            volume = volumes[mount["name"]]
            if "emptyDir" in volume:
                owner = f",uid={user}" if user is not None else ""
                tmpfs[mount["mountPath"]] = f"rw,exec,mode=1777{owner}"
            elif "secret" in volume:
                binds[str(self._secret_dir(name, volume["secret"], user, group))] = {"bind": mount["mountPath"], "mode": "ro"}
        read_only = bool(container.get("securityContext", {}).get("readOnlyRootFilesystem"))
        limits = container.get("resources", {}).get("limits", {})
        memory = _quantity(limits["memory"]) if "memory" in limits else None
        cpu = _quantity(limits["cpu"]) if "cpu" in limits else None
        created = self.client.create_container(
            f"{self.label}:{name}", environment=environment, labels={self.label: name},
            # Kubernetes' command replaces the image's entry point (and with it its CMD), args its CMD.
            entrypoint=container.get("command"), command=container.get("args"), working_dir=container.get("workingDir"),
            user=f"{user}:{group or user}" if user is not None else None,
            host_config=self.client.create_host_config(
                binds=binds, tmpfs=tmpfs, read_only=read_only,
                # A node has no swap for pods: past its limit, the container is OOM-killed.
                mem_limit=int(memory) if memory else None, memswap_limit=int(memory) if memory else None,
                nano_cpus=int(cpu * 1e9) if cpu else None),
        )
        self.containers[name] = created["Id"]
        if self.reported_ip:
            self.reported_ips[name] = self.reported_ip
        self.client.start(created["Id"])
        self._observe(pod)

    def _secret_dir(self, pod: str, volume: dict, user: Optional[int], group: Optional[int]) -> Path:
        with self.api.lock:
            secret = copy.deepcopy(self.api.objects.get(("secrets", self.namespace, volume["secretName"])) or {})
        directory = self.work_dir / pod / "secrets" / volume["secretName"]  # a pod may mount several
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
        for key, value in (secret.get("data") or {}).items():
            path = directory / key
            path.write_bytes(base64.b64decode(value))
            os.chmod(path, volume.get("defaultMode", 0o644))
            if user is not None:
                os.chown(path, user, group or user)
        os.chmod(directory, 0o755)
        return directory

    def _observe(self, pod: dict) -> None:
        name = pod["metadata"]["name"]
        container_id = self.containers.get(name)
        if not container_id:
            return
        try:
            state = self.client.inspect_container(container_id)
        except docker.errors.NotFound:
            return
        self._copy_log(name, container_id)
        container = pod["spec"]["containers"][0]
        ip = state["NetworkSettings"].get("IPAddress") or None
        base = {"name": container["name"], "image": container["image"], "imageID": state["Image"], "restartCount": 0}
        if state["State"]["Running"]:
            ready = bool(ip) and _probe(ip, container.get("readinessProbe"))  # the kubelet reaches its own pods
            reported = self.reported_ips.get(name, ip) if ip else None
            status = {"phase": "Running", "podIP": reported, "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
                      "containerStatuses": [{**base, "ready": ready, "state": {"running": {"startedAt": state["State"]["StartedAt"]}}}]}
        else:
            ended = {"reason": "OOMKilled" if state["State"].get("OOMKilled") else "Error", "exitCode": state["State"]["ExitCode"]}
            status = {"phase": "Running", "conditions": [{"type": "Ready", "status": "False"}],
                      "containerStatuses": [{**base, "ready": False, "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                                             "lastState": {"terminated": ended}}]}
        self._set_status(name, status)

    def _set_status(self, name: str, status: dict) -> None:
        with self.api.lock:
            key = ("pods", self.namespace, name)
            current = self.api.objects.get(key)
            if current is None or current.get("status") == status:
                return
            updated = copy.deepcopy(current)
            updated["status"] = status
            self.api._store(key, updated, created=False)

    def _copy_log(self, pod: str, container_id: str) -> None:
        lines = self.client.logs(container_id, timestamps=True).decode("utf-8", "replace").splitlines()
        for line in lines[self.log_lines.get(pod, 0):]:
            stamp, _, text = line.partition(" ")
            try:
                at = datetime.fromisoformat(stamp[:26].rstrip("Z")).replace(tzinfo=timezone.utc)
            except ValueError:
                at = datetime.now(timezone.utc)
            self.api.append_log(pod, text, at=at, namespace=self.namespace)
        self.log_lines[pod] = len(lines)


_SUFFIXES = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "m": 1e-3}


def _quantity(text: Any) -> float:
    """A Kubernetes quantity as a number: `512Mi` bytes, `500m` CPUs, `2` of either."""
    text = str(text)
    for suffix, factor in sorted(_SUFFIXES.items(), key=lambda item: -len(item[0])):
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * factor
    return float(text)


@dataclass
class ReplicaSet:
    """What the fake keeps of a ReplicaSet: its pods' template, its count, the Deployment's
    count when it last synced (a change of it is a scale, `_roll`), and its age."""
    template: dict
    replicas: int
    desired: int
    age: int


def _template_hash(template: dict) -> str:
    """The `pod-template-hash` of a template: the same template, the same ReplicaSet."""
    return hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()[:10]


def _ready(pod: dict) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in pod.get("status", {}).get("conditions", []))


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _terminating(pod: dict) -> bool:
    return bool(pod["metadata"].get("deletionTimestamp"))


def _endpoint_slice(name: str, service: dict, pods: list[dict], namespace: str) -> dict:
    """The slice the EndpointSlice controller keeps for `service` (publishNotReadyAddresses: false)."""
    selector = service["spec"]["selector"]
    endpoints = []
    for pod in pods:
        ip = pod.get("status", {}).get("podIP")
        if not ip or not all(pod["metadata"].get("labels", {}).get(k) == v for k, v in selector.items()):
            continue
        serving = any(c.get("type") == "Ready" and c.get("status") == "True" for c in pod["status"].get("conditions", []))
        terminating = _terminating(pod)
        endpoints.append({
            "addresses": [ip],
            "conditions": {"ready": serving and not terminating, "serving": serving, "terminating": terminating},
            "targetRef": {"kind": "Pod", "name": pod["metadata"]["name"], "namespace": namespace, "uid": pod["metadata"].get("uid", "")},
        })
    ports = [{"name": p.get("name", ""), "port": p["port"], "protocol": p.get("protocol", "TCP")} for p in service["spec"].get("ports", [])]
    labels = {**service["metadata"].get("labels", {}), SERVICE_NAME: service["metadata"]["name"],
              "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"}
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
            "metadata": {"name": name, "labels": labels}, "endpoints": endpoints, "ports": ports}


def _deletion_rank(pod: dict) -> tuple:
    """Which pod a ReplicaSet removes first (lowest first)."""
    status = pod.get("status", {})
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions", []))
    cost = int(pod["metadata"].get("annotations", {}).get(DELETION_COST, "0"))
    created = int(str(pod["metadata"].get("uid", "uid-0")).rpartition("-")[2])  # the fake's uid counts up
    return (status.get("phase") == "Running", ready, cost, -created)


def _probe(ip: str, probe: Optional[dict]) -> bool:
    if not probe or "httpGet" not in probe:
        return True
    try:
        return httpx.get(f"http://{ip}:8080{probe['httpGet']['path']}", timeout=2.0, trust_env=False).status_code == 200
    except httpx.HTTPError:
        return False


def write_kubeconfig(path: Path, server: str, namespace: str = "truss") -> Path:
    """A kubeconfig file for the fake API (no credentials: it asks for none)."""
    path.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: fake\n"
        f"clusters:\n- name: fake\n  cluster:\n    server: {server}\n"
        f"contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: {namespace}\n"
        "users:\n- name: fake\n  user: {}\n"
    )
    return path
