"""The development replica's supervisor: the public socket, the control API, the generations.

It binds the public listening socket once and keeps it open for the replica's life, so a
connection that arrives while no worker accepts waits in the kernel's backlog instead of
being refused. Workers are forked by the zygote and accept on that socket themselves.

A patch (docs/live-reload.md) is checked whole, written with an undo log, then served by
one of two paths, and the tree hash moves only once the new code answers:
- hot swap (hotswap.is_safe): the running worker re-imports and swaps its model's class;
- restart: a new generation loads while the current one serves; then the new one accepts
  and the old one stops accepting and drains.
When the new code fails (syntax, import, `__init__`/`load()`), the files are rolled back and
the current generation never stopped serving: 422 with the user's traceback.

A replica whose tree is empty (a Kubernetes development pod boots so, and its tree comes as
the first patch: runtimes/kubernetes/development.py) has no model to load: its generation
waits (LOADING, readiness 503 saying so, worker.py) until that patch, instead of failing to
load and looking like a model error. The other runtimes start a replica with its tree.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Optional

from truss_cli.server.control import apply, hotswap, messages
from truss_cli.server.control.control_api import ControlAPI, error
from truss_cli.server.control.workers import WorkerGone, WorkerHandle, WorkerRegistry
from truss_cli.server.protocol import (
    CONTROL_PATCH_PATH,
    CONTROL_RESTART_PATH,
    CONTROL_STATE_PATH,
    CONTROL_TOKEN_ENV,
    DRAIN_SECONDS,
    EXIT_BAD_CONFIG,
)
from truss_cli.server.replica_config import ReplicaConfigError, parse_replica_config, read_replica_config
from truss_cli.server.serve import configure_logging
from truss_cli.server.status import FAILED, LOADING, READY, STARTING, STOPPING, ReplicaStatus, write_status
from truss_cli.sync.envelope import EnvelopeError, read_envelope
from truss_cli.sync.manifest import Manifest

logger = logging.getLogger("truss.server")

# An envelope may carry model weights (data/ is patched like code).
MAX_ENVELOPE_BYTES = 4 * 1024 * 1024 * 1024
BACKLOG = 2048
HELLO_TIMEOUT = 60.0
EMPTY_TREE_HASH = Manifest().tree_hash()


class Supervisor:
    def __init__(self, args: Any, token: str, environ: dict) -> None:
        self.root = Path(args.model_dir).resolve()
        self.host = args.host
        self.port = args.port
        self.control_host = args.control_host
        self.control_port_wanted = args.control_port
        self.status_file: Optional[Path] = args.status_file
        self.replica_id: Optional[str] = args.replica_id
        self.token = token
        # What every worker starts with; a patch's `environment` overlays it.
        self.base_environ = {k: v for k, v in environ.items() if k != CONTROL_TOKEN_ENV}
        self.model_environ: dict = {}
        self.replica_config_path = Path(args.replica_config)
        self.replica_config_json: Optional[dict] = None
        self.python = sys.executable
        self.generation = 0
        self.current: Optional[WorkerHandle] = None
        self.current_failure: Optional[dict] = None
        self.phase = STARTING
        self.tree_hash: Optional[str] = None
        self.last_patch: Optional[dict] = None
        self.workers = WorkerRegistry()
        self._lock = asyncio.Lock()
        self.state_dir = Path(tempfile.mkdtemp(prefix="truss-control-"))
        self.config_number = 0

    # -- status ---------------------------------------------------------------------------

    def write_status(self) -> None:
        if self.status_file is None:
            return
        failure = self.current_failure or {}
        status = ReplicaStatus(
            phase=self.phase,
            replica_id=self.replica_id,
            port=getattr(self, "bound_port", None) if self.phase != STARTING else None,
            summary=failure.get("summary"),
            traceback=failure.get("traceback"),
            tree_hash=self.tree_hash,
            generation=self.current.generation if self.current else None,
            control_port=getattr(self, "control_port", None),
        )
        try:
            write_status(self.status_file, status)
        except OSError as exc:
            logger.warning("Could not write the status file %s: %s", self.status_file, exc)

    # -- life -----------------------------------------------------------------------------

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        try:
            self.config = read_replica_config(self.replica_config_path)
        except ReplicaConfigError as exc:
            print(f"error: {exc}", file=sys.stderr)
            self.phase = FAILED
            self.current_failure = {"summary": f"invalid config: {exc}"}
            self.bound_port = None
            self.write_status()
            return EXIT_BAD_CONFIG
        self.listener = socket.create_server((self.host, self.port), backlog=BACKLOG)
        self.listener.set_inheritable(True)
        self.bound_port = self.listener.getsockname()[1]
        api = ControlAPI(self.token, self.route, MAX_ENVELOPE_BYTES)
        control = await asyncio.start_server(api.handle, self.control_host, self.control_port_wanted)
        self.control_port = control.sockets[0].getsockname()[1]
        workers = await asyncio.start_unix_server(self.workers.connected, str(self.state_dir / "workers.sock"), limit=messages.LIMIT)
        self.phase = LOADING
        for leftover in await loop.run_in_executor(None, apply.remove_leftovers, self.root):
            logger.warning("Removed %s, left by a patch this replica did not finish", leftover.relative_to(self.root))
        self.manifest = await loop.run_in_executor(None, apply.scan_tree, self.root)
        self.tree_hash = self.manifest.tree_hash()
        self.write_status()
        logger.info(
            "Development replica for %s on http://%s:%d, control API on %s:%d, tree %s",
            self.root, self.host, self.bound_port, self.control_host, self.control_port, self.tree_hash[:12],
        )
        async with self._lock:  # a patch arriving now waits for the first generation
            self.zygote = await self._start_zygote()
            handle, outcome = await self._start_generation(self.replica_config_path, self._worker_environ(self.model_environ), self.tree_hash)
            # The first generation serves even a failed load (readiness 503 with the reason): a
            # development replica stays up so that a fixed file can recover it.
            await self._switch_to(handle, outcome)
        watcher = asyncio.ensure_future(self._watch_current(stop))
        await stop.wait()
        watcher.cancel()
        self.phase = STOPPING
        self.write_status()
        control.close()
        workers.close()
        if self.current is not None:
            self.current.send({"command": "stop"})
            try:
                await asyncio.wait_for(asyncio.shield(self.current.gone), DRAIN_SECONDS + 5)
            except asyncio.TimeoutError:
                logger.warning("Generation %d did not stop in time", self.current.generation)
        self.zygote.stdin.close()
        await self.zygote.wait()
        shutil.rmtree(self.state_dir, ignore_errors=True)
        return 0

    async def _start_zygote(self, python: Optional[str] = None) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            python or self.python, "-m", "truss_cli.server.control.zygote",
            stdin=asyncio.subprocess.PIPE,
            pass_fds=[self.listener.fileno()],
            env=self.base_environ,
        )

    def _worker_environ(self, model_environ: dict) -> dict:
        return {**self.base_environ, **model_environ}

    async def _start_generation(self, config_path: Path, environ: dict, tree_hash: str) -> tuple:
        """Fork the next generation; (its handle, its `ready` or `failed` message)."""
        self.generation += 1
        generation = self.generation
        hello = self.workers.expect(generation)
        spec = {
            "generation": generation,
            "model_dir": str(self.root),
            "replica_config": str(config_path),
            "environ": environ,
            "listen_fd": self.listener.fileno(),
            "control_socket": str(self.state_dir / "workers.sock"),
            "replica_id": self.replica_id,
            "tree_hash": tree_hash,
            "control_port": self.control_port,
            # The current tree is empty (not a patch's result): nothing to load until one comes.
            "awaiting_tree": tree_hash == EMPTY_TREE_HASH == self.tree_hash,
        }
        if self.zygote.returncode is not None:
            logger.error("The zygote exited (code %s); starting a new one", self.zygote.returncode)
            self.zygote = await self._start_zygote()
        self.zygote.stdin.write(json.dumps(spec).encode() + b"\n")
        await self.zygote.stdin.drain()
        zygote_exit = asyncio.ensure_future(self.zygote.wait())
        done, _ = await asyncio.wait({hello, zygote_exit}, timeout=HELLO_TIMEOUT, return_when=asyncio.FIRST_COMPLETED)
        if hello not in done:
            zygote_exit.cancel()
            self.workers.forget(generation)
            raise WorkerGone(f"generation {generation} never started (the zygote {'exited' if zygote_exit in done else 'did not answer'}; see the replica log)")
        zygote_exit.cancel()
        handle = hello.result()
        outcome = await handle.next("ready", "failed", "waiting")
        if outcome["event"] == "exited":
            outcome = {"event": "failed", "phase": "load", "summary": "the worker exited while loading the model (see the replica log)", "traceback": None}
        return handle, outcome

    async def _switch_to(self, new: WorkerHandle, outcome: dict) -> None:
        """`new` accepts, then the current generation stops accepting and drains."""
        new.send({"command": "accept"})
        accepted = await new.next("accepting")
        if accepted["event"] == "exited":
            raise WorkerGone(f"generation {new.generation} exited before accepting")
        old, self.current = self.current, new
        self.current_failure = None if outcome["event"] == "ready" else outcome
        self.phase = {"ready": READY, "waiting": LOADING}.get(outcome["event"], FAILED)
        if old is not None:
            old.send({"command": "stop"})
            await old.next("closed", timeout=30)
        self.write_status()

    async def _watch_current(self, stopping: asyncio.Event) -> None:
        """A worker that dies on its own (a crash in native code, the OOM killer) is replaced
        by a new generation of the same tree."""
        while True:
            current = self.current
            assert current is not None
            await asyncio.shield(current.gone)
            if self.current is not current:
                continue  # switched out on purpose
            async with self._lock:
                if self.current is not current or stopping.is_set():
                    continue  # or a SIGTERM sent to the whole process group: not a crash
                logger.error("Generation %d exited; starting generation %d", current.generation, self.generation + 1)
                handle, outcome = await self._start_generation(self._config_path(), self._worker_environ(self.model_environ), self.tree_hash)
                self.current = None
                await self._switch_to(handle, outcome)

    def _keep_zygote(self, zygote: asyncio.subprocess.Process) -> None:
        """Go back to `zygote`, closing a newer one started for a patch that failed."""
        if self.zygote is not zygote:
            self.zygote.stdin.close()
            self.zygote = zygote

    def _config_path(self) -> Path:
        return self.replica_config_path

    # -- the control API ------------------------------------------------------------------

    async def route(self, method: str, path: str, body: Any) -> tuple:
        if path == CONTROL_STATE_PATH:
            if method != "GET":
                return error(405, "METHOD_NOT_ALLOWED", f"{path} takes GET")
            return 200, self.state()
        if path == CONTROL_PATCH_PATH:
            if method != "POST":
                return error(405, "METHOD_NOT_ALLOWED", f"{path} takes POST with an envelope")
            async with self._lock:
                # The envelope's blobs are needed until the patch is applied or refused only.
                blob_dir = Path(tempfile.mkdtemp(prefix="blobs-", dir=self.state_dir))
                try:
                    return await self._patch(body, blob_dir)
                finally:
                    shutil.rmtree(blob_dir, ignore_errors=True)
        if path == CONTROL_RESTART_PATH:
            if method != "POST":
                return error(405, "METHOD_NOT_ALLOWED", f"{path} takes POST")
            async with self._lock:
                return await self._restart_only()
        return error(404, "NOT_FOUND", f"no route {path}; the control API has {CONTROL_STATE_PATH}, {CONTROL_PATCH_PATH}, {CONTROL_RESTART_PATH}")

    def state(self) -> dict:
        return {
            "tree_hash": self.tree_hash,
            "generation": self.current.generation if self.current else None,
            "phase": self.phase,
            "last_patch": self.last_patch,
        }

    async def _restart_only(self) -> tuple:
        started = time.perf_counter()
        handle, outcome = await self._start_generation(self._config_path(), self._worker_environ(self.model_environ), self.tree_hash)
        loaded = time.perf_counter()
        if outcome["event"] != "ready" and self.phase == READY:
            handle.send({"command": "stop"})
            return _failed(outcome)
        await self._switch_to(handle, outcome)
        return 200, self._answer("restart", "restart asked for", started, started, loaded)

    async def _patch(self, body: Any, blob_dir: Path) -> tuple:
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        try:
            document = await loop.run_in_executor(None, read_envelope, body, blob_dir, MAX_ENVELOPE_BYTES)
        except EnvelopeError as exc:
            return error(400, "BAD_ENVELOPE", str(exc))
        problem = _document_problem(document)
        if problem:
            return error(400, "BAD_PATCH", problem)
        if document["from_hash"] != self.tree_hash:
            return error(409, "STALE_PATCH_BASE", {"tree_hash": self.tree_hash})
        try:
            planned = apply.plan(self.manifest, document, blob_dir, self.root)
        except apply.PatchRefused as exc:
            return error(400, "BAD_PATCH", str(exc))
        if planned.manifest.tree_hash() != document["to_hash"]:
            return error(400, "TREE_HASH_MISMATCH", f"the patch applied to tree {self.tree_hash} gives {planned.manifest.tree_hash()}, not to_hash {document['to_hash']}")
        new_config = document.get("replica_config")
        new_environ = document.get("environment")
        config_changed = new_config is not None and new_config != self.replica_config_json
        environ_changed = new_environ is not None and new_environ != self.model_environ
        new_python = document.get("python")
        python_changed = new_python is not None and new_python != self.python
        if python_changed and not (os.path.isfile(new_python) and os.access(new_python, os.X_OK)):
            return error(400, "BAD_PATCH", f"python: {new_python} is not an executable file on the replica")
        config_path = self._config_path()
        config = self.config
        if config_changed:
            try:
                config = parse_replica_config(json.dumps(new_config), "replica_config")
            except ReplicaConfigError as exc:
                return error(400, "BAD_PATCH", str(exc))
            self.config_number += 1
            config_path = self.state_dir / f"replica-config-{self.config_number}.json"
            config_path.write_text(json.dumps(new_config), encoding="utf-8")
        if not planned.puts and not planned.deletes and not config_changed and not environ_changed and not python_changed:
            return 200, self._answer("none", "nothing changed", started, time.perf_counter(), time.perf_counter())
        changed: dict = {}  # path -> new source (None when not a module: never hot swapped)
        for path, entry in planned.puts:
            changed[path] = None
            if path.endswith(".py"):
                source = planned.sources[entry.sha256].read_bytes()
                try:
                    hotswap.parse(source, path)  # ast.parse; the hot swap check reuses the tree
                except SyntaxError as exc:
                    return _failed({"phase": "syntax", "summary": f"syntax error: {exc.msg} ({path}, line {exc.lineno})",
                                    "traceback": "".join(traceback.format_exception_only(type(exc), exc))})
                changed[path] = source
        other = (
            "the interpreter changed" if python_changed
            else "the replica config changed" if config_changed
            else "the environment changed" if environ_changed
            else None
        )
        if document.get("hot_reload") == "off":
            safe, reason = False, "hot reload is off"
        elif self.phase != READY:
            safe, reason = False, "the running code is not loaded"
        else:
            safe, reason = hotswap.is_safe(self.root, self.config, changed, planned.deletes, other)
        applied = await loop.run_in_executor(None, apply.apply_plan, self.root, planned, self.state_dir)
        written = time.perf_counter()
        to_hash = document["to_hash"]
        try:
            action = None
            if safe:
                assert self.current is not None
                self.current.send({"command": "hot_swap", "tree_hash": to_hash})
                answer = await self.current.next("swapped", "swap_failed", "swap_refused")
                if answer["event"] == "swapped":
                    action = "hot_swap"
                elif answer["event"] == "swap_failed":
                    applied.rollback()
                    return _failed(answer)
                else:
                    reason = answer.get("reason", "the worker refused the swap")
            loaded = time.perf_counter()
            if action is None:
                environ = self._worker_environ(new_environ if environ_changed else self.model_environ)
                old_zygote = self.zygote
                if python_changed:  # a new zygote on the new interpreter; the old one until it works
                    self.zygote = await self._start_zygote(new_python)
                try:
                    handle, outcome = await self._start_generation(config_path, environ, to_hash)
                except BaseException:
                    self._keep_zygote(old_zygote)
                    raise
                loaded = time.perf_counter()
                if outcome["event"] != "ready":
                    handle.send({"command": "stop"})
                    self._keep_zygote(old_zygote)
                    applied.rollback()
                    return _failed(outcome)
                await self._switch_to(handle, outcome)
                if python_changed:
                    old_zygote.stdin.close()  # it exits; the old generation drains on its own
                    self.python = new_python
                action = "restart"
        except BaseException:
            applied.rollback()
            raise
        applied.commit()
        self.manifest = planned.manifest
        self.tree_hash = to_hash
        if config_changed:
            self.replica_config_path, self.replica_config_json, self.config = config_path, new_config, config
        if environ_changed:
            self.model_environ = new_environ
        self.write_status()
        answer = self._answer(action, reason, started, written, loaded)
        self.last_patch = {"from_hash": document["from_hash"], **answer}
        logger.info("Patch %s → %s: %s (%s) in %.0f ms", document["from_hash"][:12], to_hash[:12], action, reason, answer["ms"]["total"])
        return 200, answer

    def _answer(self, action: str, reason: str, started: float, written: float, loaded: float) -> dict:
        now = time.perf_counter()
        return {
            "tree_hash": self.tree_hash,
            "generation": self.current.generation if self.current else None,
            "action": action,
            "reason": reason,
            "ms": {
                "apply": round((written - started) * 1000, 2),
                "load": round((loaded - written) * 1000, 2),
                "switch": round((now - loaded) * 1000, 2),
                "total": round((now - started) * 1000, 2),
            },
        }


def _failed(outcome: dict) -> tuple:
    return error(422, "PATCH_FAILED", {
        "phase": outcome.get("phase", "load"),
        "summary": outcome.get("summary"),
        "traceback": outcome.get("traceback"),
    })


def _document_problem(document: dict) -> Optional[str]:
    if document.get("format") != 1:
        return f"patch.json: format {document.get('format')!r}; this replica reads format 1"
    for key in ("from_hash", "to_hash"):
        if not isinstance(document.get(key), str):
            return f"patch.json: {key} must be a tree hash (a string)"
    for key, kind in (("replica_config", dict), ("environment", dict)):
        if document.get(key) is not None and not isinstance(document[key], kind):
            return f"patch.json: {key} must be an object or null"
    if document.get("environment") and not all(isinstance(v, str) for v in document["environment"].values()):
        return "patch.json: environment values must be strings"
    if document.get("hot_reload", "auto") not in ("auto", "off"):
        return "patch.json: hot_reload must be \"auto\" or \"off\""
    return None


def run(args: Any, token: str) -> int:
    configure_logging()
    supervisor = Supervisor(args, token, dict(os.environ))
    try:
        return asyncio.run(supervisor.run())
    except OSError as exc:
        summary = f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}"
        print(f"error: {summary}", file=sys.stderr)
        supervisor.phase, supervisor.current_failure, supervisor.bound_port = FAILED, {"summary": summary}, None
        supervisor.write_status()
        return 1
    finally:
        shutil.rmtree(supervisor.state_dir, ignore_errors=True)
