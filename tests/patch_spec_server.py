"""A control plane's patch routes per docs/live-reload.md, for the client's tests.

Real HTTP on a real socket (stdlib ThreadingHTTPServer on port 0), in-memory state, one model
`m1` with one development deployment `dev1`. It reads each envelope with sync/envelope.py and
applies the Patch with `Patch.apply_to`, as the control plane does; the "replica" is a parse of
every `.py` file put: a syntax error answers 422 PATCH_FAILED with a traceback (pending
stays, running does not move), anything else a hot swap. Tests steer it: `unavailable` (how
many syncs answer 503 before one goes through), `foreign_change(path, bytes)` (someone else
patches the deployment), and read what it received (`patches`, `wakes`, `files`).
"""

from __future__ import annotations

import ast
import hashlib
import io
import json
import tempfile
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from truss_cli.sync.envelope import EnvelopeError, read_envelope
from truss_cli.sync.manifest import FILE_MODE, Entry, Manifest
from truss_cli.sync.patch import Patch, PatchError

MODEL_ID = "m1"
DEPLOYMENT_ID = "dev1"


@dataclass
class State:
    running: Manifest
    pending: Manifest | None = None
    contents: dict[str, bytes] = field(default_factory=dict)  # sha256 -> bytes
    unavailable: int = 0
    patches: list[dict[str, Any]] = field(default_factory=list)  # each patch.json received
    answers: list[int] = field(default_factory=list)  # the status of each patch POST
    wakes: int = 0

    @property
    def base(self) -> Manifest:
        return self.pending if self.pending is not None else self.running

    def files(self, manifest: Manifest | None = None) -> dict[str, bytes]:
        """The tree's files with their contents (running by default)."""
        manifest = self.running if manifest is None else manifest
        return {path: self.contents[entry.sha256] for path, entry in manifest.items()}


class PatchSpecServer:
    def __init__(self, files: dict[str, bytes]) -> None:
        contents = {hashlib.sha256(data).hexdigest(): data for data in files.values()}
        manifest = Manifest({path: Entry(hashlib.sha256(data).hexdigest(), FILE_MODE) for path, data in files.items()})
        self.state = State(running=manifest, contents=contents)
        self.lock = threading.Lock()
        handler = type("Handler", (_Handler,), {"spec": self})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.deployment = {"id": DEPLOYMENT_ID, "model_id": MODEL_ID, "name": "development", "status": "ACTIVE", "is_development": True}

    def __enter__(self) -> "PatchSpecServer":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def foreign_change(self, path: str, data: bytes) -> None:
        """Another client patched the deployment: this client's base is now stale."""
        with self.lock:
            digest = hashlib.sha256(data).hexdigest()
            self.state.contents[digest] = data
            self.state.running = self.state.base.with_changes({path: Entry(digest, FILE_MODE)})
            self.state.pending = None


class _Handler(BaseHTTPRequestHandler):
    spec: PatchSpecServer

    def log_message(self, *args: Any) -> None:
        pass

    def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _fail(self, status: int, code: str, detail: Any = None, headers: dict[str, str] | None = None) -> None:
        self._send(status, {"error": code.lower().replace("_", " "), "error_code": code, "detail": detail}, headers)

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        with self.spec.lock:
            if url.path == f"/v1/models/{MODEL_ID}/deployments/development":
                return self._send(200, self.spec.deployment)
            if url.path == f"/v1/models/{MODEL_ID}/deployments/{DEPLOYMENT_ID}/patches/state":
                body = self._state()
                if query.get("manifest") == ["1"]:
                    body["manifest"] = {p: {"sha256": e.sha256, "mode": e.mode} for p, e in self.spec.state.base.items()}
                return self._send(200, body)
        self._fail(404, "NOT_FOUND")

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with self.spec.lock:
            state = self.spec.state
            if url.path == f"/model-{MODEL_ID}/development/wake":
                state.wakes += 1
                return self._send(202, {"model_id": MODEL_ID, "target": "development", "waking_up": False})
            if url.path == "/v1/blobs/missing":
                digests = json.loads(body)["digests"]
                return self._send(200, {"missing": [d for d in digests if d not in state.contents]})
            prefix = f"/v1/models/{MODEL_ID}/deployments/{DEPLOYMENT_ID}/patches"
            if url.path == prefix:
                return self._patch(body, parse_qs(url.query).get("sync") == ["true"])
            if url.path == prefix + "/sync":
                return self._sync()
        self._fail(404, "NOT_FOUND")

    def _state(self) -> dict[str, Any]:
        state = self.spec.state
        pending = None if state.pending is None else {"hash": state.pending.tree_hash()}
        return {"running_patch_point": {"hash": state.running.tree_hash()}, "pending_patch_point": pending}

    def _patch(self, body: bytes, sync: bool) -> None:
        state = self.spec.state
        with tempfile.TemporaryDirectory() as blobs:
            try:
                document = read_envelope(io.BytesIO(body), Path(blobs), 1 << 30)
                patch = Patch.from_dict(document)
            except (EnvelopeError, PatchError) as exc:
                state.answers.append(400)
                return self._fail(400, "BAD_PATCH", str(exc))
            state.patches.append(document)
            if patch.prev_patch_hash != state.base.tree_hash():
                state.answers.append(409)
                return self._fail(409, "STALE_PATCH_BASE", self._state())
            for digest_file in Path(blobs).iterdir():
                state.contents[digest_file.name] = digest_file.read_bytes()
        try:
            new = patch.apply_to(state.base)
        except PatchError as exc:
            state.answers.append(400)
            return self._fail(400, "TREE_HASH_MISMATCH", str(exc))
        lacking = [path for path, entry in new.items() if entry.sha256 not in state.contents]
        if lacking:
            state.answers.append(400)
            return self._fail(400, "MISSING_BLOB", lacking)
        state.pending = new
        if not sync:
            state.answers.append(201)
            return self._send(201, {"patch_point": {"hash": new.tree_hash(), "seq": len(state.patches)}})
        self._sync()

    def _sync(self) -> None:
        state = self.spec.state
        if state.unavailable > 0:
            state.unavailable -= 1
            state.answers.append(503)
            return self._fail(503, "REPLICA_UNAVAILABLE", "the replica is restarting", {"Retry-After": "0"})
        if state.pending is None:
            state.answers.append(200)
            return self._send(200, {"action": "none", "reason": "nothing pending", "tree_hash": state.running.tree_hash(), "ms": {}})
        for path, data in state.files(state.pending).items():
            if path.endswith(".py"):
                try:
                    ast.parse(data, filename=path)
                except SyntaxError as exc:
                    state.answers.append(422)
                    trace = f'  File "{path}", line {exc.lineno}\n{exc.text or ""}SyntaxError: {exc.msg}'
                    return self._fail(422, "PATCH_FAILED", {"phase": "syntax", "summary": f"SyntaxError: {exc.msg} ({path}, line {exc.lineno})", "traceback": trace})
        state.running, state.pending = state.pending, None
        state.answers.append(200)
        self._send(200, {"action": "hot_swap", "reason": "model/model.py: predict changed", "tree_hash": state.running.tree_hash(), "ms": {"total": 1.0}, "needs_full_deploy_reason": None})
