"""A fake Kubernetes API server over real HTTP, for tests of the runtime's client (no tests of its own).

No cluster can run on these machines, so `runtimes/kubernetes/api.py` is tested against this:
uvicorn serving a Starlette app on 127.0.0.1 port 0 in a thread. It implements only the
endpoints the runtime calls, with their documented semantics:

- server-side apply: PATCH `application/apply-patch+yaml` with `fieldManager` (400 without),
  `force`; creates a missing object (201); a field owned by another manager with a different
  value is a 409 Conflict unless forced (then ownership moves); a field the applier owned
  alone and left out is removed; an apply that changes nothing keeps the resourceVersion.
  Simplified: lists are atomic (no merge keys) and managedFields is not shown in objects.
- GET / DELETE of one object (404 `Status` objects; a create in a missing namespace says
  `namespaces "NS" not found`), `deployments/{name}/scale` GET / PATCH / PUT (422 below 0,
  409 on a stale resourceVersion in a PUT).
- list and `watch=true` with one resourceVersion counter for everything, as etcd's: a watch
  from version N streams every ADDED/MODIFIED/DELETED after N (no bookmarks); without a version
  it starts with ADDED for what exists; a version older than the last compaction answers an
  ERROR event with a 410 Expired Status, as the real server does. `labelSelector` with
  equality terms (`a=b`, `a==b`, `a!=b`).
- `pods/{name}/log` (`sinceSeconds`, `timestamps`, `follow`).

- with `graceful_pods` (a kubelet runs them: tests/kube_fake_cluster.py), a DELETE of a pod
  is graceful, as the real server's: the pod stays, with `metadata.deletionTimestamp` and
  `deletionGracePeriodSeconds` (its `terminationGracePeriodSeconds`), until the kubelet has
  stopped its container and removes it (`remove`). Without it, a delete is immediate.

There is no kubelet and no controller: tests set pods and EndpointSlices with `put`, drop
watch connections with `drop_watches`, hold reconnections with `hold_watches`, expire history
with `compact`, refuse a verb with `forbid` (and `allow` it again), and hold calls of one
verb on one resource with `hold` (so a test can show a client is stuck waiting on them).
"""

from __future__ import annotations

import asyncio
import copy
import json
import threading
import time
from datetime import datetime, timezone
from typing import Any, AsyncIterator, Optional

import uvicorn
import yaml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from test_server_harness import wait_for

# (group/version, plural) -> kind: the only resources this fake serves.
RESOURCES = {
    ("v1", "pods"): "Pod",
    ("v1", "services"): "Service",
    ("v1", "secrets"): "Secret",
    ("apps/v1", "deployments"): "Deployment",
    ("policy/v1", "poddisruptionbudgets"): "PodDisruptionBudget",
    ("discovery.k8s.io/v1", "endpointslices"): "EndpointSlice",
}
PLURALS = {plural: group_version for group_version, plural in RESOURCES}
SERVER_SET_METADATA = ("resourceVersion", "uid", "creationTimestamp", "generation", "managedFields")


def status(code: int, reason: str, message: str, details: Optional[dict] = None) -> JSONResponse:
    body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}
    if details:
        body["details"] = details
    return JSONResponse(body, status_code=code)


def leaves(obj: Any, prefix: tuple = ()) -> dict[tuple, Any]:
    """Field path -> value for every leaf of a dict; lists count as one leaf (atomic)."""
    if isinstance(obj, dict) and obj:
        out: dict[tuple, Any] = {}
        for key, value in obj.items():
            out.update(leaves(value, prefix + (key,)))
        return out
    return {prefix: obj}


def set_path(obj: dict, path: tuple, value: Any) -> None:
    for key in path[:-1]:
        obj = obj.setdefault(key, {})
    obj[path[-1]] = value


def drop_path(obj: dict, path: tuple) -> None:
    parents = [obj]
    for key in path[:-1]:
        obj = obj.get(key)
        if not isinstance(obj, dict):
            return
        parents.append(obj)
    obj.pop(path[-1], None)
    for parent, key in zip(reversed(parents[:-1]), reversed(path[:-1])):  # prune emptied maps
        if parent.get(key) == {}:
            del parent[key]


def matches(labels: dict, selector: str) -> bool:
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key.strip()) == value.strip():
                return False
        else:
            key, value = term.replace("==", "=").split("=", 1)
            if labels.get(key.strip()) != value.strip():
                return False
    return True


class FakeKubernetesApi:
    def __init__(self, namespaces: tuple[str, ...] = ("truss",), token: Optional[str] = None, unserved: tuple[str, ...] = ()) -> None:
        self.namespaces = set(namespaces)
        self.unserved = set(unserved)  # plurals this "cluster" has no API for (an older version)
        self.token = token
        self.lock = threading.Lock()
        self.objects: dict[tuple[str, str, str], dict] = {}  # (plural, namespace, name) -> object
        self.owners: dict[tuple[str, str, str], dict[tuple, tuple[str, str]]] = {}  # path -> (manager, operation)
        self.logs: dict[tuple[str, str], list[tuple[datetime, str]]] = {}
        self.ended_logs: set[tuple[str, str]] = set()
        self.events: list[tuple[int, str, str, dict]] = []  # (resourceVersion, type, plural, object)
        self.version = 100
        self.horizon = 0  # watches from before this version get 410 Gone
        self.forbidden: set[tuple[str, str]] = set()  # (verb, resource)
        self.held_calls: set[tuple[str, str]] = set()  # (verb, resource) answered only once released
        self.waiting_calls: dict[tuple[str, str], int] = {}  # (verb, resource) -> calls held now
        self.graceful_pods = False
        self.requests: list[dict] = []  # {"method", "path", "params"} of every request, for assertions
        self.watch_epoch = 0
        self.abrupt = False
        self.held = threading.Event()
        self.held.set()
        self.loop: Optional[asyncio.AbstractEventLoop] = None
        self.changed: Optional[asyncio.Event] = None
        routes = [
            Route("/api/v1/namespaces/{ns}/{plural}", self.collection, methods=["GET"]),
            Route("/api/v1/namespaces/{ns}/{plural}/{name}", self.one, methods=["GET", "PATCH", "DELETE"]),
            Route("/api/v1/namespaces/{ns}/pods/{name}/log", self.log, methods=["GET"]),
            Route("/apis/{group}/{version}/namespaces/{ns}/{plural}", self.collection, methods=["GET"]),
            Route("/apis/{group}/{version}/namespaces/{ns}/{plural}/{name}", self.one, methods=["GET", "PATCH", "DELETE"]),
            Route("/apis/apps/v1/namespaces/{ns}/deployments/{name}/scale", self.scale, methods=["GET", "PATCH", "PUT"]),
        ]
        self.app = Starlette(routes=routes)
        self.app.add_middleware(_Gate, fake=self)
        self.server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=0, log_level="warning", lifespan="off"))
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        wait_for(lambda: self.server.started or not self.thread.is_alive(), "the fake Kubernetes API to listen")
        self.url = f"http://127.0.0.1:{self.server.servers[0].sockets[0].getsockname()[1]}"

    def _run(self) -> None:
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        self.changed = asyncio.Event()
        self.loop.run_until_complete(self.server.serve())

    def close(self) -> None:
        self.drop_watches()
        self.server.should_exit = True
        self.thread.join(timeout=10)

    # ---- test hooks (the fake has no kubelet and no controllers) ----

    def put(self, plural: str, obj: dict, namespace: str = "truss") -> dict:
        """Create or replace an object as a controller would (pods, EndpointSlices)."""
        with self.lock:
            key = (plural, namespace, obj["metadata"]["name"])
            return self._store(key, copy.deepcopy(obj), created=key not in self.objects)

    def remove(self, plural: str, name: str, namespace: str = "truss") -> None:
        with self.lock:
            self._delete((plural, namespace, name))

    def append_log(self, pod: str, text: str, at: Optional[datetime] = None, namespace: str = "truss") -> None:
        with self.lock:
            self.logs.setdefault((namespace, pod), []).append((at or datetime.now(timezone.utc), text))
        self._wake()

    def end_log(self, pod: str, namespace: str = "truss") -> None:
        with self.lock:
            self.ended_logs.add((namespace, pod))
        self._wake()

    def forbid(self, verb: str, resource: str) -> None:
        """Answer 403 to `verb` on `resource` (e.g. "patch", "deployments"; "get", "pods/log")."""
        self.forbidden.add((verb, resource))

    def allow(self, verb: str, resource: str) -> None:
        self.forbidden.discard((verb, resource))

    def hold(self, verb: str, resource: str, held: bool = True) -> None:
        """While held, calls of `verb` on `resource` (e.g. "list", "pods") wait unanswered."""
        (self.held_calls.add if held else self.held_calls.discard)((verb, resource))

    def terminate_pod(self, name: str, namespace: str = "truss") -> Optional[dict]:
        """A graceful delete (see `graceful_pods`): mark the pod terminating, once. -> the pod, or None."""
        with self.lock:
            key = ("pods", namespace, name)
            pod = self.objects.get(key)
            if pod is None or pod["metadata"].get("deletionTimestamp"):
                return pod
            updated = copy.deepcopy(pod)
            updated["metadata"]["deletionTimestamp"] = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
            updated["metadata"]["deletionGracePeriodSeconds"] = int(pod.get("spec", {}).get("terminationGracePeriodSeconds", 30))
            return self._store(key, updated, created=False)

    def drop_watches(self, abruptly: bool = False) -> None:
        """End every open watch response (cleanly, as a server's timeout does, or abruptly, as a
        crash or a proxy does: the chunked body is cut off without its last chunk)."""
        self.abrupt = abruptly
        self.watch_epoch += 1
        self._wake()

    def hold_watches(self, hold: bool) -> None:
        """While held, new watch requests wait (so a test can change things while nobody watches)."""
        (self.held.clear if hold else self.held.set)()

    def compact(self) -> None:
        """Forget the event history, so a watch from any older version gets 410 Gone."""
        with self.lock:
            self.events.clear()
            self.horizon = self.version + 1

    def watch_requests(self, plural: str) -> list[dict]:
        return [r["params"] for r in self.requests if r["path"].endswith("/" + plural) and r["params"].get("watch") in ("true", "1")]

    def list_requests(self, plural: str) -> list[dict]:
        return [r["params"] for r in self.requests if r["path"].endswith("/" + plural) and r["params"].get("watch") not in ("true", "1")]

    # ---- the store ----

    def _wake(self) -> None:
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self._wake_on_loop)

    def _wake_on_loop(self) -> None:
        assert self.changed is not None
        self.changed.set()
        self.changed = asyncio.Event()

    def _store(self, key: tuple[str, str, str], obj: dict, created: bool) -> dict:
        group_version = PLURALS[key[0]]
        self.version += 1
        meta = obj.setdefault("metadata", {})
        meta.update(name=key[2], namespace=key[1], resourceVersion=str(self.version))
        if created:
            meta.update(uid=f"uid-{self.version}", creationTimestamp=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), generation=1)
        obj.update(apiVersion=group_version, kind=RESOURCES[(group_version, key[0])])
        self.objects[key] = obj
        self.events.append((self.version, "ADDED" if created else "MODIFIED", key[0], copy.deepcopy(obj)))
        self._wake()
        return obj

    def _delete(self, key: tuple[str, str, str]) -> Optional[dict]:
        obj = self.objects.pop(key, None)
        self.owners.pop(key, None)
        if obj is not None:
            self.version += 1
            obj["metadata"]["resourceVersion"] = str(self.version)
            self.events.append((self.version, "DELETED", key[0], copy.deepcopy(obj)))
            self._wake()
        return obj

    def _not_found(self, plural: str, name: str) -> JSONResponse:
        group = PLURALS[plural].rpartition("/")[0]
        resource = f"{plural}.{group}" if group else plural
        return status(404, "NotFound", f'{resource} "{name}" not found', {"name": name, "group": group, "kind": plural})

    # ---- endpoints ----

    async def one(self, request: Request) -> Response:
        p = request.path_params
        plural, ns, name = p["plural"], p["ns"], p["name"]
        if plural not in PLURALS or PLURALS[plural] != _group_version(p) or plural in self.unserved:
            return status(404, "NotFound", "the server could not find the requested resource")
        key = (plural, ns, name)
        if request.method == "GET":
            with self.lock:
                obj = self.objects.get(key)
            return JSONResponse(obj) if obj else self._not_found(plural, name)
        if request.method == "DELETE" and plural == "pods" and self.graceful_pods:
            obj = self.terminate_pod(name, ns)
            return JSONResponse(obj) if obj else self._not_found(plural, name)
        if request.method == "DELETE":
            with self.lock:
                obj = self._delete(key)
            if obj is None:
                return self._not_found(plural, name)
            return JSONResponse({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                                 "details": {"name": name, "group": PLURALS[plural].rpartition("/")[0], "kind": plural, "uid": obj["metadata"]["uid"]}})
        if request.headers.get("content-type", "").split(";")[0] != "application/apply-patch+yaml":
            return status(415, "UnsupportedMediaType", "this fake accepts only server-side apply patches")
        manager = request.query_params.get("fieldManager")
        if not manager:
            return status(400, "BadRequest", "PATCH requests require fieldManager for server-side apply")
        if ns not in self.namespaces:
            return status(404, "NotFound", f'namespaces "{ns}" not found', {"name": ns, "kind": "namespaces"})
        applied = yaml.safe_load(await request.body()) or {}
        kind = RESOURCES[(PLURALS[plural], plural)]
        if applied.get("apiVersion") != PLURALS[plural] or applied.get("kind") != kind or applied.get("metadata", {}).get("name") != name:
            return status(400, "BadRequest", f"the applied object must be {PLURALS[plural]} {kind} named {name!r}")
        force = request.query_params.get("force") in ("true", "1")
        with self.lock:
            return self._apply(key, applied, (manager, "Apply"), force)

    def _apply(self, key: tuple[str, str, str], applied: dict, manager: tuple[str, str], force: bool) -> JSONResponse:
        applied.pop("status", None)
        for field in SERVER_SET_METADATA + ("namespace",):
            applied["metadata"].pop(field, None)
        fields = leaves(applied)
        existing = self.objects.get(key)
        owners = self.owners.setdefault(key, {})
        current = leaves(existing) if existing else {}
        conflicts = [path for path, value in fields.items()
                     if path in owners and owners[path] != manager and current.get(path) != value]
        if conflicts and not force:
            names = ", ".join("." + ".".join(path) for path in conflicts)
            causes = [{"type": "FieldManagerConflict", "message": f'conflict with "{owners[p][0]}"', "field": "." + ".".join(p)} for p in conflicts]
            return status(409, "Conflict", f"Apply failed with {len(conflicts)} conflict(s): {names}", {"causes": causes})
        merged = copy.deepcopy(existing) if existing else {}
        for path, owner in list(owners.items()):
            if owner == manager and path not in fields:  # the applier let go of a field it alone owned
                drop_path(merged, path)
                del owners[path]
        for path, value in fields.items():
            set_path(merged, path, copy.deepcopy(value))
            owners[path] = manager
        if key[0] == "deployments":
            merged.setdefault("spec", {}).setdefault("replicas", 1)  # the API server's default
        if existing is not None and merged == existing:
            return JSONResponse(existing)  # nothing changed: same resourceVersion, no event
        if existing is not None and merged.get("spec") != existing.get("spec"):
            merged["metadata"]["generation"] = existing["metadata"].get("generation", 1) + 1
        obj = self._store(key, merged, created=existing is None)
        return JSONResponse(obj, status_code=201 if existing is None else 200)

    async def scale(self, request: Request) -> Response:
        ns, name = request.path_params["ns"], request.path_params["name"]
        key = ("deployments", ns, name)
        with self.lock:
            deployment = self.objects.get(key)
            if deployment is None:
                return self._not_found("deployments", name)
            if request.method != "GET":
                body = json.loads(await request.body())
                replicas = body.get("spec", {}).get("replicas")
                if not isinstance(replicas, int) or replicas < 0:
                    return status(422, "Invalid", f'Scale.autoscaling "{name}" is invalid: spec.replicas: must be greater than or equal to 0')
                sent_version = body.get("metadata", {}).get("resourceVersion")
                if request.method == "PUT" and sent_version and sent_version != deployment["metadata"]["resourceVersion"]:
                    return status(409, "Conflict", f'Operation cannot be fulfilled on deployments.apps "{name}": the object has been modified')
                if replicas != deployment["spec"].get("replicas"):
                    updated = copy.deepcopy(deployment)
                    updated["spec"]["replicas"] = replicas
                    updated["metadata"]["generation"] = deployment["metadata"].get("generation", 1) + 1
                    self.owners.setdefault(key, {})[("spec", "replicas")] = (request.query_params.get("fieldManager", "unknown"), "Update")
                    deployment = self._store(key, updated, created=False)
            labels = deployment["spec"].get("selector", {}).get("matchLabels", {})
            return JSONResponse({
                "kind": "Scale", "apiVersion": "autoscaling/v1",
                "metadata": {"name": name, "namespace": ns, "resourceVersion": deployment["metadata"]["resourceVersion"]},
                "spec": {"replicas": deployment["spec"].get("replicas", 1)},
                "status": {"replicas": deployment["spec"].get("replicas", 1), "selector": ",".join(f"{k}={v}" for k, v in labels.items())},
            })

    async def collection(self, request: Request) -> Response:
        p = request.path_params
        plural, ns = p["plural"], p["ns"]
        if plural not in PLURALS or PLURALS[plural] != _group_version(p) or plural in self.unserved:
            return status(404, "NotFound", "the server could not find the requested resource")
        selector = request.query_params.get("labelSelector", "")
        if request.query_params.get("watch") in ("true", "1"):
            return StreamingResponse(self._watch(plural, ns, selector, request.query_params.get("resourceVersion")), media_type="application/json")
        with self.lock:
            items = [_without_type(o) for (pl, n, _), o in sorted(self.objects.items())
                     if pl == plural and n == ns and matches(o["metadata"].get("labels", {}), selector)]
            version = self.version
        kind = RESOURCES[(PLURALS[plural], plural)]
        return JSONResponse({"kind": kind + "List", "apiVersion": PLURALS[plural], "metadata": {"resourceVersion": str(version)}, "items": items})

    async def _watch(self, plural: str, ns: str, selector: str, since: Optional[str]) -> AsyncIterator[bytes]:
        while not self.held.is_set():
            await asyncio.sleep(0.02)
        epoch = self.watch_epoch
        with self.lock:
            if since in (None, "", "0"):
                start = self.version
                initial = [o for (pl, n, _), o in sorted(self.objects.items()) if pl == plural and n == ns]
            else:
                start, initial = int(since), []
                if start < self.horizon - 1:
                    gone = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "reason": "Expired", "code": 410,
                            "message": f"too old resource version: {since} ({self.horizon - 1})"}
                    yield (json.dumps({"type": "ERROR", "object": gone}) + "\n").encode()
                    return
        for obj in initial:
            if matches(obj["metadata"].get("labels", {}), selector):
                yield (json.dumps({"type": "ADDED", "object": obj}) + "\n").encode()
        sent = start
        while epoch == self.watch_epoch:
            assert self.changed is not None
            changed = self.changed  # taken before reading the log, so no wake-up is lost
            with self.lock:
                pending = [e for e in self.events if e[0] > sent and e[2] == plural and e[3]["metadata"]["namespace"] == ns]
            if epoch != self.watch_epoch:
                break  # dropped meanwhile: what changed after the drop goes to the next watch only
            for version, kind, _, obj in pending:
                sent = version
                if matches(obj["metadata"].get("labels", {}), selector):
                    yield (json.dumps({"type": kind, "object": obj}) + "\n").encode()
            if not pending:
                await changed.wait()
        if self.abrupt:
            raise ConnectionAbortedError("the fake Kubernetes API cut this watch off (drop_watches(abruptly=True))")

    async def log(self, request: Request) -> Response:
        ns, name = request.path_params["ns"], request.path_params["name"]
        with self.lock:
            if ("pods", ns, name) not in self.objects:
                return self._not_found("pods", name)
        q = request.query_params
        since = float(q["sinceSeconds"]) if "sinceSeconds" in q else None
        stamps = q.get("timestamps") in ("true", "1")

        def lines(start: int) -> list[str]:
            with self.lock:
                entries = self.logs.get((ns, name), [])[start:]
            cutoff = time.time() - since if since is not None else None
            return [(at.strftime("%Y-%m-%dT%H:%M:%S.%fZ ") if stamps else "") + text + "\n"
                    for at, text in entries if cutoff is None or at.timestamp() >= cutoff]

        if q.get("follow") not in ("true", "1"):
            return PlainTextResponse("".join(lines(0)))

        async def follow() -> AsyncIterator[bytes]:
            sent = 0
            while True:
                assert self.changed is not None
                changed = self.changed
                with self.lock:
                    total, ended = len(self.logs.get((ns, name), [])), (ns, name) in self.ended_logs
                for line in lines(sent)[: max(0, total - sent)]:
                    yield line.encode()
                sent = total
                if ended:
                    return
                await changed.wait()

        return StreamingResponse(follow(), media_type="text/plain")


def _group_version(path_params: dict) -> str:
    return f"{path_params['group']}/{path_params['version']}" if "group" in path_params else "v1"


def _without_type(obj: dict) -> dict:
    """List items carry no kind/apiVersion, as the real server sends them."""
    return {k: v for k, v in obj.items() if k not in ("kind", "apiVersion")}


class _Gate:
    """Records every request, checks the bearer token (401) and answers 403 for a forbidden verb."""

    def __init__(self, app: Any, fake: FakeKubernetesApi) -> None:
        self.app, self.fake = app, fake

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        request = Request(scope)
        self.fake.requests.append({"method": request.method, "path": request.url.path, "params": dict(request.query_params)})
        if self.fake.token and request.headers.get("authorization") != f"Bearer {self.fake.token}":
            return await status(401, "Unauthorized", "Unauthorized")(scope, receive, send)
        parts = request.url.path.strip("/").split("/")
        ns_at = parts.index("namespaces") if "namespaces" in parts else -1
        rest = parts[ns_at + 2:] if ns_at >= 0 else []
        watching = request.query_params.get("watch") in ("true", "1")
        verb = {"GET": "watch" if watching else ("get" if len(rest) > 1 else "list"),
                "PATCH": "patch", "PUT": "update", "DELETE": "delete", "POST": "create"}[request.method]
        resource = "/".join([rest[0]] + rest[2:]) if rest else ""
        if (verb, resource) in self.fake.held_calls:
            waiting = self.fake.waiting_calls
            waiting[(verb, resource)] = waiting.get((verb, resource), 0) + 1
            try:
                while (verb, resource) in self.fake.held_calls:
                    await asyncio.sleep(0.02)
            finally:
                waiting[(verb, resource)] -= 1
        if (verb, resource) in self.fake.forbidden:
            group = parts[1] if parts[0] == "apis" else ""
            name = f' "{rest[1]}"' if len(rest) > 1 else ""
            message = (f'{rest[0]}{"." + group if group else ""}{name} is forbidden: User "system:serviceaccount:{parts[ns_at + 1]}:truss" '
                       f'cannot {verb} resource "{resource}" in API group "{group}" in the namespace "{parts[ns_at + 1]}"')
            return await status(403, "Forbidden", message, {"group": group, "kind": rest[0]})(scope, receive, send)
        await self.app(scope, receive, send)
