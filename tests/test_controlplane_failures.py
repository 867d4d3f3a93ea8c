"""The control plane when things go wrong, end to end: a real server process, real HTTP,
real replicas (process runtime): a requirement that does not exist, a crash in the middle of
a build, the OpenAI SDK through the gateway, hostile or oversized input, and a CLI predict on
a deployment that failed to load."""

from __future__ import annotations

import hashlib
import io
import json
import os
import socket
import subprocess
import sys
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

from openai import OpenAI

from conftest import REPO_ROOT, write_model_dir
from test_gateway_passthrough import CHAT_MODEL  # the OpenAI-style echo model, written once
from controlplane_support import running_controlplane, start_controlplane, stop_replicas

FINAL = ("ACTIVE", "BUILD_FAILED", "DEPLOY_FAILED")

ECHO_MODEL = """
class Model:
    def predict(self, request):
        return {"echo": request}
"""


def build_log_text(cp, model: str, deployment: str) -> str:
    response = cp.client.get(f"/v1/models/{model}/deployments/{deployment}/logs", params={"kind": "build"})
    assert response.status_code == 200, response.text
    return "\n".join(json.loads(line).get("text", line) if line.startswith("{") else line
                     for line in response.text.splitlines())


def test_a_requirement_that_does_not_exist_is_build_failed_with_the_installers_message(tmp_path: Path) -> None:
    model_dir = write_model_dir(
        tmp_path / "missing-dep", ECHO_MODEL,
        "model_name: missing-dep\nrequirements:\n  - this-package-does-not-exist-truss-cli==1.0\n",
    )
    with running_controlplane(tmp_path / "cp") as cp:
        created = cp.push(model_dir)
        failed = cp.wait_for_status(created["model_id"], created["id"], *FINAL)
        assert failed["status"] == "BUILD_FAILED", failed
        detail = failed["status_detail"]
        assert detail and "\n" not in detail, detail
        # One line that names the cause, not only "installing the requirements failed:".
        assert "this-package-does-not-exist-truss-cli" in detail, detail
        log = build_log_text(cp, "missing-dep", created["id"])  # failed: not production
        # The installer's own words reach the user through the build log route.
        assert "this-package-does-not-exist-truss-cli" in log, log


def test_openai_sdk_through_the_control_plane_with_the_admin_key(tmp_path: Path) -> None:
    model_dir = write_model_dir(tmp_path / "chat", CHAT_MODEL, "model_name: chat\n")
    with running_controlplane(tmp_path / "cp") as cp:
        created = cp.push(model_dir)
        active = cp.wait_for_status(created["model_id"], created["id"], *FINAL)
        assert active["status"] == "ACTIVE", active
        base_url = f"{cp.url}/model-{created['model_id']}/production/sync/v1"

        client = OpenAI(base_url=base_url, api_key=cp.admin_key, max_retries=0)  # sent as Authorization: Bearer
        completion = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hello there"}])
        assert completion.choices[0].message.content == "echo: hello there"

        stream = client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "one two three"}], stream=True)
        assert [chunk.choices[0].delta.content for chunk in stream] == ["echo: ", "one ", "two ", "three "]

        # A wrong key is refused by the gateway, not passed to the model.
        wrong = OpenAI(base_url=base_url, api_key="tk_nope.wrong", max_retries=0)
        try:
            wrong.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
        except Exception as exc:  # openai.AuthenticationError
            assert getattr(exc, "status_code", None) == 401, exc
        else:
            raise AssertionError("a wrong key was accepted")


def _archive_with(name: str, content: bytes) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo(name)
        info.size = len(content)
        tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def test_hostile_archive_unknown_model_and_oversized_body_are_refused(tmp_path: Path) -> None:
    model_dir = write_model_dir(tmp_path / "echo", ECHO_MODEL, "model_name: echo\n")
    data_dir = tmp_path / "cp"
    with running_controlplane(data_dir) as cp:
        body = _archive_with("../escaped.txt", b"outside")
        before = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if "logs" not in p.parts
                        and not p.name.startswith("controlplane"))
        refused = cp.client.post("/v1/archives", content=body, headers={
            "Content-Type": "application/octet-stream", "X-Truss-Archive-Sha256": hashlib.sha256(body).hexdigest()})
        assert refused.status_code == 400, refused.text
        assert refused.json()["error_code"] == "INVALID_ARCHIVE"
        assert ".." in refused.json()["error"] or "escaped.txt" in refused.json()["error"], refused.json()
        assert not (data_dir / "escaped.txt").exists() and not (tmp_path / "escaped.txt").exists()
        after = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if "logs" not in p.parts
                       and not p.name.startswith("controlplane"))
        assert [p for p in after if p not in before and "tmp" not in Path(p).parts] == []
        assert list((data_dir / "tmp").rglob("*")) == [] if (data_dir / "tmp").exists() else True

        created = cp.push(model_dir)
        assert cp.wait_for_status(created["model_id"], created["id"], *FINAL)["status"] == "ACTIVE"

        unknown = cp.client.post("/model-nosuchmodel/production/predict", json={})
        assert unknown.status_code == 404, unknown.text
        assert unknown.json()["error_code"] == "MODEL_NOT_FOUND"
        # The gateway's error shape: `error` is the reason phrase, `detail` says what exists.
        assert created["model_id"] in unknown.json()["detail"], unknown.json()

        # Over the gateway's limit (128 MiB; not configurable on `serve`): refused on the
        # declared length, before a byte of the body is sent or read.
        limit = 128 * 1024 * 1024
        parts = urlsplit(cp.url)
        with socket.create_connection((parts.hostname, parts.port), timeout=60) as conn:
            conn.sendall((f"POST /model-{created['model_id']}/production/predict HTTP/1.1\r\n"
                          f"Host: {parts.netloc}\r\nAuthorization: Api-Key {cp.admin_key}\r\n"
                          f"Content-Type: application/json\r\nContent-Length: {limit + 1}\r\n\r\n").encode())
            answer = b""
            while b"\r\n\r\n" not in answer:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 413"), answer[:300]

        # Still serving afterwards.
        ok = cp.client.post(f"/model-{created['model_id']}/production/predict", json={"n": 1})
        assert ok.status_code == 200 and ok.json() == {"echo": {"n": 1}}, ok.text


FAILING_LOAD = """
class Model:
    def load(self):
        raise RuntimeError("the weights are missing")

    def predict(self, request):
        return request
"""


def test_cli_predict_on_a_model_that_failed_to_load_names_the_state(tmp_path: Path) -> None:
    from truss_cli.client.remotes import add_remote, trussrc_path

    model_dir = write_model_dir(tmp_path / "broken", FAILING_LOAD, "model_name: broken\n")
    home = tmp_path / "home"
    home.mkdir()
    with running_controlplane(tmp_path / "cp") as cp:
        created = cp.push(model_dir)
        failed = cp.wait_for_status(created["model_id"], created["id"], *FINAL)
        assert failed["status"] == "DEPLOY_FAILED", failed
        # From the moment the API says so, production is empty (what lets the CLI name the
        # failure), not a bare 503 until the reconciler's next tick (the flake seen under load).
        empty = cp.client.post(f"/model-{created['model_id']}/production/predict", json={"x": 1})
        assert (empty.status_code, empty.json()["error_code"]) == (404, "ENVIRONMENT_EMPTY"), empty.text
        add_remote(trussrc_path(home), "local", cp.url, cp.admin_key, use=True)
        env = {**os.environ, "HOME": str(home), "XDG_DATA_HOME": str(home / "data"), "PYTHONPATH": str(REPO_ROOT)}
        result = subprocess.run([sys.executable, "-m", "truss_cli", "predict", "--model", "broken", "-d", '{"x": 1}'],
                                env=env, capture_output=True, text=True, timeout=300)
        assert result.returncode != 0
        first = result.stderr.strip().splitlines()[0]
        # Not a bare "Error: Service Unavailable": the state, and why.
        assert "DEPLOY_FAILED" in first and "weights are missing" in first, result.stderr


def _tiny_wheel() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as wheel:
        files = {
            "truss_held_pkg/__init__.py": "VALUE = 'held'\n",
            "truss_held_pkg-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: truss-held-pkg\nVersion: 1.0\n",
            "truss_held_pkg-1.0.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        }
        record = "".join(f"{name},,\n" for name in files) + "truss_held_pkg-1.0.dist-info/RECORD,,\n"
        for name, text in {**files, "truss_held_pkg-1.0.dist-info/RECORD": record}.items():
            wheel.writestr(name, text)
    return buffer.getvalue()


class HeldWheelServer:
    """Serves one wheel on port 0, holding every download until `release()`."""

    def __init__(self) -> None:
        wheel, outer = _tiny_wheel(), self
        self.requests = 0
        self.requested = threading.Condition()
        self.released = threading.Event()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                with outer.requested:
                    outer.requests += 1
                    outer.requested.notify_all()
                outer.released.wait(600)
                self.send_response(200)
                self.send_header("Content-Length", str(len(wheel)))
                self.end_headers()
                self.wfile.write(wheel)

            def do_HEAD(self) -> None:  # noqa: N802
                # uv asks what the file is before fetching it: answered at once, never held.
                self.send_response(200)
                self.send_header("Content-Length", str(len(wheel)))
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/truss_held_pkg-1.0-py3-none-any.whl"

    def wait_for_requests(self, count: int, timeout: float = 120) -> None:
        with self.requested:
            assert self.requested.wait_for(lambda: self.requests >= count, timeout), f"{self.requests} requests"

    def close(self) -> None:
        self.released.set()
        self.server.shutdown()


HELD_MODEL = """
import truss_held_pkg


class Model:
    def predict(self, request):
        return {"value": truss_held_pkg.VALUE, "echo": request}
"""


def test_a_build_cut_off_by_kill_9_runs_again_after_restart(tmp_path: Path) -> None:
    held = HeldWheelServer()
    data_dir = tmp_path / "cp"
    model_dir = write_model_dir(tmp_path / "held", HELD_MODEL,
                                f"model_name: held\nrequirements:\n  - truss-held-pkg @ {held.url}\n")
    cp = start_controlplane(data_dir)
    try:
        created = cp.push(model_dir)
        held.wait_for_requests(1)  # the build is downloading, and held there
        cp.kill()
        cp = start_controlplane(data_dir, admin_key=cp.admin_key)
        held.wait_for_requests(2)  # the restarted control plane ran the build again
        held.released.set()
        active = cp.wait_for_status(created["model_id"], created["id"], *FINAL)
        assert active["status"] == "ACTIVE", active
        predict = cp.client.post(f"/model-{created['model_id']}/production/predict", json={"n": 1})
        assert predict.status_code == 200 and predict.json() == {"value": "held", "echo": {"n": 1}}, predict.text
    finally:
        held.close()
        cp.close()
        if cp.process.poll() is None:
            cp.terminate()
        stop_replicas(data_dir)
