"""A small control plane that answers per /work/issue8-spec.md, for the client's tests.

Real HTTP on a real socket (stdlib ThreadingHTTPServer on port 0), in-memory state. It
builds nothing: a created deployment goes to `final_status` (ACTIVE unless a test says
otherwise) after `polls_until_final` GETs, and its predict route echoes the payload. It
records what it received so tests can check what the client sent.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from truss_cli.sync.manifest import Manifest

ADMIN_KEY = "tc_admin_key_for_tests"
INVOKE_KEY = "tc_invoke_key_for_tests"


@dataclass
class State:
    blobs: set[str] = field(default_factory=set)
    trees: set[str] = field(default_factory=set)
    models: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> model
    deployments: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> deployment
    polls: dict[str, int] = field(default_factory=dict)
    uploads: list[dict[str, Any]] = field(default_factory=list)  # per archive: its member paths
    secrets: dict[str, str] = field(default_factory=dict)
    api_keys: list[dict[str, Any]] = field(default_factory=list)
    requests: list[tuple[str, str]] = field(default_factory=list)
    final_status: str = "ACTIVE"
    status_detail: str | None = None
    polls_until_final: int = 2
    logs: list[dict[str, Any]] = field(default_factory=list)


class SpecServer:
    def __init__(self) -> None:
        self.state = State()
        self.lock = threading.Lock()
        handler = type("Handler", (_Handler,), {"spec": self})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> "SpecServer":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class _Handler(BaseHTTPRequestHandler):
    spec: SpecServer
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    # -- answers --------------------------------------------------------------------
    def _send(self, status: int, body: Any, content_type: str = "application/json") -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _fail(self, status: int, error: str, code: str, detail: Any = None) -> None:
        self._send(status, {"error": error, "error_code": code, "detail": detail})

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _dispatch(self, method: str) -> None:
        parts = urlsplit(self.path)
        path, query = unquote(parts.path), parse_qs(parts.query)
        state, lock = self.spec.state, self.spec.lock
        body = self._body()
        with lock:
            state.requests.append((method, self.path))
        auth = self.headers.get("Authorization", "")
        key = auth.split(" ", 1)[1] if auth.startswith(("Api-Key ", "Bearer ")) else None
        if key not in (ADMIN_KEY, INVOKE_KEY):
            return self._fail(401, "missing or unknown API key", "UNAUTHORIZED")
        segments = [s for s in path.split("/") if s]
        if segments and segments[0].startswith("model-"):
            return self._gateway(method, segments, body)
        if key != ADMIN_KEY:
            return self._fail(403, "this API key may only call predict", "FORBIDDEN")
        with lock:
            self._management(method, segments, query, body)

    def _gateway(self, method: str, segments: list[str], body: bytes) -> None:
        model_id = segments[0][len("model-"):]
        model = self.spec.state.models.get(model_id)
        if model is None:
            return self._fail(404, f"no model {model_id}", "NOT_FOUND")
        if segments[1:] == ["production", "predict"]:
            target = model["production_deployment_id"]
        elif len(segments) == 4 and segments[1] == "deployment":
            target = segments[2]
        else:
            return self._fail(404, "no such route", "NOT_FOUND")
        self._send(200, {"echo": json.loads(body), "deployment_id": target})

    def _management(self, method: str, seg: list[str], query: dict[str, list[str]], body: bytes) -> None:
        state = self.spec.state
        if seg == ["v1", "server"] and method == "GET":
            return self._send(200, {"version": "test", "runtime": "process", "runtime_reason": "no docker", "database": "sqlite",
                                    "data_dir": "/nowhere", "models": len(state.models), "deployments": len(state.deployments), "replicas": 0})
        if seg == ["v1", "blobs", "missing"] and method == "POST":
            digests = json.loads(body)["digests"]
            return self._send(200, {"missing": [d for d in digests if d not in state.blobs]})
        if seg == ["v1", "archives"] and method == "POST":
            return self._archive(body)
        if seg == ["v1", "models"] and method == "GET":
            return self._send(200, {"models": list(state.models.values())})
        if seg[:2] == ["v1", "models"] and len(seg) >= 3:
            model = self._find_model(seg[2])
            if len(seg) == 4 and seg[3] == "deployments" and method == "POST":
                return self._create(model, seg[2], json.loads(body))
            if model is None:
                return self._fail(404, f"no model {seg[2]!r}", "NOT_FOUND", {"models": [m["name"] for m in state.models.values()]})
            if len(seg) == 3 and method == "GET":
                return self._send(200, model)
            mine = [d for d in state.deployments.values() if d["model_id"] == model["id"]]
            if len(seg) == 4 and method == "GET":
                return self._send(200, {"deployments": mine})
            if len(seg) >= 5:
                found = next((d for d in mine if seg[4] in (d["id"], d["name"]) or (seg[4] == "production" and d["is_production"])), None)
                if found is None:
                    return self._fail(404, f"no deployment {seg[4]!r} of model {model['name']}", "NOT_FOUND",
                                      {"deployments": [d["name"] for d in mine]})
                if len(seg) == 5 and method == "GET":
                    return self._send(200, self._advance(found))
                if len(seg) == 6 and seg[5] == "logs":
                    lines = b"".join(json.dumps(line).encode() + b"\n" for line in state.logs)
                    return self._send(200, lines, "application/x-ndjson")
        if seg == ["v1", "secrets"]:
            if method == "GET":
                return self._send(200, {"secrets": [{"name": n, "created_at": "t", "updated_at": "t"} for n in sorted(state.secrets)]})
            data = json.loads(body)
            state.secrets[data["name"]] = data["value"]
            return self._send(200, {"name": data["name"]})
        if seg[:2] == ["v1", "secrets"] and method == "DELETE":
            if seg[2] not in state.secrets:
                return self._fail(404, f"no secret {seg[2]!r}", "NOT_FOUND", {"secrets": sorted(state.secrets)})
            del state.secrets[seg[2]]
            return self._send(200, {"name": seg[2], "deleted": True})
        if seg == ["v1", "api_keys"]:
            if method == "GET":
                return self._send(200, {"api_keys": state.api_keys})
            data = json.loads(body)
            record = {"prefix": f"tc_{len(state.api_keys):04d}", "scope": data["scope"], "models": data["models"],
                      "name": data["name"], "created_at": "2024-01-01T00:00:00Z", "last_used_at": None}
            state.api_keys.append(record)
            return self._send(201, {**record, "key": record["prefix"] + "_plaintext"})
        if seg[:2] == ["v1", "api_keys"] and method == "DELETE":
            state.api_keys = [k for k in state.api_keys if k["prefix"] != seg[2]]
            return self._send(200, {"prefix": seg[2], "revoked": True})
        self._fail(404, f"no route {method} {'/'.join(seg)}", "NOT_FOUND")

    def _archive(self, body: bytes) -> None:
        state = self.spec.state
        if hashlib.sha256(body).hexdigest() != self.headers.get("X-Truss-Archive-Sha256"):
            return self._fail(400, "archive: sha256 does not match its header", "BAD_ARCHIVE")
        members = []
        with tarfile.open(fileobj=io.BytesIO(gzip.decompress(body))) as tar:
            for member in tar.getmembers():
                members.append(member.name)
                if member.isfile():
                    content = tar.extractfile(member).read()  # type: ignore[union-attr]
                    digest = hashlib.sha256(content).hexdigest()
                    state.blobs.add(digest)
                    if member.name == "manifest.json":
                        tree_hash = Manifest.from_json(content).tree_hash()
                        state.trees.add(tree_hash)
        state.uploads.append({"members": members, "size": len(body)})
        self._send(201, {"tree_hash": tree_hash, "files": len(members) - 1, "stored": len(members)})

    def _find_model(self, ref: str) -> dict[str, Any] | None:
        return next((m for m in self.spec.state.models.values() if ref in (m["id"], m["name"])), None)

    def _create(self, model: dict[str, Any] | None, ref: str, data: dict[str, Any]) -> None:
        state = self.spec.state
        if data["tree_hash"] not in state.trees:
            return self._fail(400, f"tree {data['tree_hash'][:12]} was not uploaded", "UNKNOWN_TREE")
        if model is None:
            model = {"id": uuid.uuid4().hex[:8], "name": ref, "created_at": "t", "deployments_count": 0, "production_deployment_id": None}
            state.models[model["id"]] = model
        first = model["production_deployment_id"] is None
        deployment_id = uuid.uuid4().hex[:8]
        deployment = {"id": deployment_id, "name": data["deployment_name"] or deployment_id, "model_id": model["id"],
                      "status": "BUILDING", "status_detail": None, "is_production": first, "is_development": False,
                      "environment": "production" if first else None, "active_replica_count": 0, "created_at": "t",
                      "labels": data["labels"], "tree_hash": data["tree_hash"]}
        if first:
            model["production_deployment_id"] = deployment_id
        model["deployments_count"] += 1
        state.deployments[deployment_id] = deployment
        state.polls[deployment_id] = 0
        self._send(201, {k: v for k, v in deployment.items() if k != "tree_hash"})

    def _advance(self, deployment: dict[str, Any]) -> dict[str, Any]:
        state = self.spec.state
        state.polls[deployment["id"]] += 1
        if state.polls[deployment["id"]] >= state.polls_until_final and deployment["status"] == "BUILDING":
            deployment["status"] = state.final_status
            deployment["status_detail"] = state.status_detail
            deployment["active_replica_count"] = 1 if state.final_status == "ACTIVE" else 0
        return {k: v for k, v in deployment.items() if k != "tree_hash"}
