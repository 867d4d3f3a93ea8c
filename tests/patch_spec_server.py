"""A control plane's patch routes per docs/live-reload.md, for the client's tests.

Real HTTP on a real socket (stdlib ThreadingHTTPServer on port 0), in-memory state, one model
`m1` with one development deployment `dev1`. It reads each envelope with sync/envelope.py and
applies the Patch with `Patch.apply_to`, as the control plane does; the "replica" is a parse of
every `.py` file put: a syntax error (or a top-level line starting `raise `: an import error)
answers 422 PATCH_FAILED with a traceback (pending stays, running does not move), anything
else a hot swap. Tests steer it: `unavailable` (how
many syncs answer 503 before one goes through), `foreign_change(path, bytes)` (someone else
patches the deployment), and read what it received (`patches`, `wakes`, `files`).

config.yaml is read as the control plane reads it (docs/live-reload.md C2, C3):
- a change of a key in `REBUILD_KEYS` answers `action: "rebuild"` and starts a rebuild the
  test drives: `rebuild_moves_to("deploying")`, `rebuild_serves()`, `rebuild_fails(error,
  tail)`; meanwhile the running tree (the old code) does not move and the state carries
  `rebuild`. As the control plane (controlplane/dev_rebuild.py): a sync of the tree being
  rebuilt answers `rebuild` again (nothing starts over); a patch staged on top during a
  rebuild answers `deferred` and is synced by the server itself when the rebuild ends (served
  or failed); a patch staged after a failed rebuild clears `rebuild`;
- a change of `requirements` alone answers `action: "requirements"` with what was added,
  removed and changed (`"old -> new"`); a requirement whose name starts with `does-not-exist`
  fails to install: 422 PATCH_FAILED phase `requirements`, uv's output as the traceback.
A 422 of the model (a syntax error) names the file relative to the tree (C1).
"""

from __future__ import annotations

import ast
import hashlib
import io
import json
import re
import tempfile
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

from truss_cli.sync.envelope import EnvelopeError, read_envelope
from truss_cli.sync.manifest import FILE_MODE, Entry, Manifest
from truss_cli.sync.patch import Patch, PatchError

MODEL_ID = "m1"
DEPLOYMENT_ID = "dev1"
# A subset of controlplane/patch_classify.py's: what the tests change.
REBUILD_KEYS = ("python_version", "system_packages", "base_image", "resources")
UNINSTALLABLE = "does-not-exist"


@dataclass
class State:
    running: Manifest
    pending: Manifest | None = None
    contents: dict[str, bytes] = field(default_factory=dict)  # sha256 -> bytes
    unavailable: int = 0
    patches: list[dict[str, Any]] = field(default_factory=list)  # each patch.json received
    answers: list[int] = field(default_factory=list)  # the status of each patch POST
    wakes: int = 0
    rebuild: dict[str, Any] | None = None  # the state's `rebuild` (C2)

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
        self.trees: dict[str, Manifest] = {manifest.tree_hash(): manifest}  # every tree staged, by hash
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

    def rebuild_moves_to(self, phase: str) -> None:
        with self.lock:
            assert self.state.rebuild is not None, "no rebuild under way"
            self.state.rebuild["phase"] = phase

    def rebuild_serves(self) -> Answer | None:
        """The rebuilt tree is ready: it becomes the running one (the old replica stops); a
        tree staged on top meanwhile is synced now, as the control plane does (its answer
        returned, None when there was none)."""
        with self.lock:
            state = self.state
            assert state.rebuild is not None and state.rebuild["phase"] != "failed", "no rebuild under way"
            rebuilt = self.trees[state.rebuild["tree_hash"]]
            later = state.pending if state.pending is not None and state.pending != rebuilt else None
            state.running, state.pending, state.rebuild = rebuilt, later, None
            return sync(state) if later is not None else None

    def rebuild_fails(self, error: str, build_log_tail: list[str]) -> Answer | None:
        """The build failed: the old code serves on, the staged tree stays (the next patch
        builds on it); a tree staged on top meanwhile is synced now (its answer returned)."""
        with self.lock:
            state = self.state
            assert state.rebuild is not None, "no rebuild under way"
            state.rebuild.update(phase="failed", error=error, build_log_tail=build_log_tail)
            later = state.pending is not None and state.pending.tree_hash() != state.rebuild["tree_hash"]
            return sync(state) if later else None

    def foreign_change(self, path: str, data: bytes) -> None:
        """Another client patched the deployment: this client's base is now stale."""
        with self.lock:
            digest = hashlib.sha256(data).hexdigest()
            self.state.contents[digest] = data
            self.state.running = self.state.base.with_changes({path: Entry(digest, FILE_MODE)})
            self.state.pending = None
            self.trees[self.state.running.tree_hash()] = self.state.running


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
        rebuild = None if state.rebuild is None else dict(state.rebuild)
        return {"running_patch_point": {"hash": state.running.tree_hash()}, "pending_patch_point": pending, "rebuild": rebuild}

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
        self.spec.trees[new.tree_hash()] = new
        if state.rebuild is not None and state.rebuild["phase"] == "failed":
            state.rebuild = None  # C2: a failed rebuild is shown until the next patch is staged
        if not sync:
            state.answers.append(201)
            return self._send(201, {"patch_point": {"hash": new.tree_hash(), "seq": len(state.patches)}})
        self._sync()

    def _sync(self) -> None:
        status, body, headers = sync(self.spec.state)
        self._send(status, body, headers)


Answer = tuple[int, dict[str, Any], dict[str, str]]


def _failure(status: int, code: str, detail: Any = None, headers: dict[str, str] | None = None) -> Answer:
    return status, {"error": code.lower().replace("_", " "), "error_code": code, "detail": detail}, headers or {}


def sync(state: State) -> Answer:
    """`POST .../patches/sync` on `state` (the caller holds the lock); its status is recorded."""
    answer = _sync(state)
    state.answers.append(answer[0])
    return answer


def _sync(state: State) -> Answer:
    if state.unavailable > 0:
        state.unavailable -= 1
        return _failure(503, "REPLICA_UNAVAILABLE", "the replica is restarting", {"Retry-After": "0"})
    if state.pending is None:
        return 200, {"action": "none", "reason": "nothing staged", "tree_hash": state.running.tree_hash(), "ms": {}}, {}
    pending = state.pending.tree_hash()
    if state.rebuild is not None and state.rebuild["phase"] != "failed":
        if state.rebuild["tree_hash"] == pending:
            return _answer("rebuild", state.rebuild["reason"], pending, needs_full_deploy_reason=state.rebuild["reason"])
        return _answer("deferred", f"a rebuild is {state.rebuild['phase']} (the previous tree serves): this tree is synced once it ends", pending)
    old, new = _config(state.files()), _config(state.files(state.pending))
    changed = [key for key in REBUILD_KEYS if old.get(key) != new.get(key)]
    if changed:
        reason = f"config.yaml: {changed[0]} changed"
        state.rebuild = {"tree_hash": pending, "reason": reason, "phase": "building", "error": None, "build_log_tail": None}
        return _answer("rebuild", reason, pending, needs_full_deploy_reason=reason)
    if old.get("requirements") != new.get("requirements"):
        return _requirements(state, old.get("requirements") or [], new.get("requirements") or [])
    return _check_code_and_serve(state, "hot_swap", "model/model.py: predict changed")


def _answer(action: str, reason: str, tree_hash: str, **extra: Any) -> Answer:
    return 200, {"action": action, "reason": reason, "tree_hash": tree_hash, "ms": {"total": 1.0}, "needs_full_deploy_reason": None, **extra}, {}


def _requirements(state: State, old: list[str], new: list[str]) -> Answer:
    """As the control plane's `requirements_delta`: lines matched by project name."""
    before, after = {_name(r): r for r in old}, {_name(r): r for r in new}
    changes = {
        "added": [after[name] for name in after if name not in before],
        "removed": [before[name] for name in before if name not in after],
        "changed": [f"{before[name]} -> {after[name]}" for name in after if name in before and before[name] != after[name]],
    }
    failing = [name for name in after if name.startswith(UNINSTALLABLE)]
    if failing:
        output = f"  x No solution found when resolving dependencies:\n  ╰─▶ Because {failing[0]} was not found in the package registry and you require {failing[0]}, we can conclude that your requirements are unsatisfiable."
        return _failure(422, "PATCH_FAILED", {"phase": "requirements", "summary": f"installing the requirements failed: {failing[0]} was not found", "traceback": output})
    reason = "requirements changed: " + ", ".join([f"+{r}" for r in changes["added"]] + [f"-{r}" for r in changes["removed"]] + changes["changed"])
    return _check_code_and_serve(state, "requirements", reason, {"requirements": changes})


def _check_code_and_serve(state: State, action: str, reason: str, extra: dict[str, Any] | None = None) -> Answer:
    assert state.pending is not None
    for path, data in state.files(state.pending).items():
        if not path.endswith(".py"):
            continue
        try:
            ast.parse(data, filename=path)
        except SyntaxError as exc:
            trace = f'  File "{path}", line {exc.lineno}\n{exc.text or ""}SyntaxError: {exc.msg}'
            return _failure(422, "PATCH_FAILED", {"phase": "syntax", "summary": f"SyntaxError: {exc.msg} ({path}, line {exc.lineno})", "traceback": trace})
        raising = [number for number, line in enumerate(data.decode().splitlines(), 1) if line.startswith("raise ")]
        if raising:  # the module raises when imported: the replica's import traceback
            trace = (
                "Traceback (most recent call last):\n"
                '  File "/usr/lib/python3.11/importlib/__init__.py", line 126, in import_module\n'
                f'  File "{path}", line {raising[0]}, in <module>\n'
                "RuntimeError: raised at import\n"
            )
            return _failure(422, "PATCH_FAILED", {"phase": "import", "summary": f"RuntimeError: raised at import ({path})", "traceback": trace})
    state.running, state.pending = state.pending, None
    return _answer(action, reason, state.running.tree_hash(), **(extra or {}))


def _config(files: dict[str, bytes]) -> dict[str, Any]:
    data = yaml.safe_load(files.get("config.yaml", b"")) or {}
    return data if isinstance(data, dict) else {}


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0].strip().lower()
