"""`truss predict` through Typer's CliRunner, against real model servers on real ports."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Iterator

import pytest
from typer.testing import CliRunner

from conftest import EXAMPLES, REPO_ROOT
from test_server_harness import ModelServer, start_ready, write_model_dir
from truss_cli.cli.app import app
from truss_cli.server.protocol import PREDICT_PATH

runner = CliRunner()


@pytest.fixture(scope="module")
def hello(tmp_path_factory: pytest.TempPathFactory):
    server = _serve_copy(EXAMPLES / "hello", tmp_path_factory.mktemp("hello"))
    yield server
    server.stop()


@pytest.fixture
def refused_url() -> Iterator[str]:
    """A URL where nothing answers: its port is held, bound but not listening, for the test."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{held.getsockname()[1]}"


def _serve_copy(source: Path, root: Path) -> ModelServer:
    """Serve a copy of an example: the harness writes its log next to the model directory."""
    model_dir = root / source.name
    shutil.copytree(source, model_dir)
    server = ModelServer(model_dir)
    try:
        return server.wait_ready()
    except BaseException:
        print(server.log())
        server.stop()
        raise


def test_prints_the_json_result(hello: ModelServer) -> None:
    result = runner.invoke(app, ["predict", "--url", hello.url, "-d", '{"name": "world"}'])
    assert result.exit_code == 0, result.output
    assert result.stdout == '{"greeting": "Hello, world!"}\n'


def test_reads_the_input_from_a_file_or_stdin(hello: ModelServer, tmp_path: Path) -> None:
    payload = tmp_path / "input.json"
    payload.write_text('{\n  "name": "file"\n}\n')
    from_file = runner.invoke(app, ["predict", "--url", hello.url, "-f", str(payload)])
    assert json.loads(from_file.stdout) == {"greeting": "Hello, file!"}
    from_stdin = runner.invoke(app, ["predict", "--url", hello.url, "-f", "-"], input='{"name": "stdin"}')
    assert json.loads(from_stdin.stdout) == {"greeting": "Hello, stdin!"}


def test_accepts_a_full_predict_url(hello: ModelServer) -> None:
    result = runner.invoke(app, ["predict", "--url", hello.url + PREDICT_PATH, "-d", "{}"])
    assert json.loads(result.stdout) == {"greeting": "Hello, world!"}


def test_streamed_chunks_are_printed(tmp_path: Path) -> None:
    server = _serve_copy(EXAMPLES / "streaming", tmp_path)
    try:
        result = runner.invoke(app, ["predict", "--url", server.url, "-d", '{"text": "the quick brown fox", "delay": 0}'])
    finally:
        server.stop()
    assert result.exit_code == 0, result.output
    assert result.stdout == "the quick brown fox\n"


def test_chunks_appear_before_the_stream_ends(tmp_path: Path) -> None:
    # The model yields "first", then waits until the test has seen it on predict's stdout.
    gate = tmp_path / "gate"
    server = start_ready(
        tmp_path / "gated",
        f"""
        import os, time

        class Model:
            def predict(self, model_input):
                yield "first\\n"
                while not os.path.exists({str(gate)!r}):
                    time.sleep(0.02)
                yield "second\\n"
        """,
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "truss_cli", "predict", "--url", server.url, "-d", "{}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    # If predict buffered the whole response, this opens the gate so the test fails, not hangs.
    watchdog = threading.Timer(30, gate.touch)
    watchdog.start()
    try:
        assert process.stdout.readline() == b"first\n"
        assert not gate.exists(), "the first chunk was only printed once the stream had ended"
        gate.touch()
        assert process.stdout.read() == b"second\n"
        assert process.wait(30) == 0
    finally:
        watchdog.cancel()
        process.kill()
        process.wait()
        server.stop()


def test_a_model_error_prints_the_servers_message_not_its_json(tmp_path: Path) -> None:
    server = start_ready(
        tmp_path / "failing",
        """
        class Model:
            def predict(self, model_input):
                raise ValueError("cannot handle this input")
        """,
    )
    try:
        result = runner.invoke(app, ["predict", "--url", server.url, "-d", "{}"])
    finally:
        server.stop()
    assert result.exit_code == 1
    assert result.stdout == ""
    first_line, *rest = result.stderr.splitlines()
    assert first_line.startswith("Error: the model server answered 500 Internal Server Error: "), result.stderr
    message = first_line.split("Internal Server Error: ", 1)[1]
    assert message and "{" not in message and '"' not in message  # the message, not the JSON around it
    assert rest == ["Hint: the model server's log has the traceback"]


def test_a_model_that_is_still_loading_gets_a_hint(tmp_path: Path) -> None:
    gate = tmp_path / "loaded"
    model_dir = write_model_dir(
        tmp_path / "slow",
        f"""
        import os, time

        class Model:
            def load(self):
                while not os.path.exists({str(gate)!r}):
                    time.sleep(0.02)

            def predict(self, model_input):
                return model_input
        """,
    )
    server = ModelServer(model_dir)
    try:
        server.wait_live()
        result = runner.invoke(app, ["predict", "--url", server.url, "-d", "{}"])
        gate.touch()
    finally:
        server.stop()
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: the model server answered 503 Service Unavailable: model is not ready")
    assert "Hint: the model is not ready: wait until `truss run` prints the URL" in result.stderr


def test_a_proxy_in_the_environment_does_not_capture_local_servers(
    hello: ModelServer, refused_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Nothing listens there: a request sent through this proxy would fail.
    dead_proxy = refused_url
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.setenv(name, dead_proxy)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    result = runner.invoke(app, ["predict", "--url", hello.url, "-d", '{"name": "proxy"}'])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"greeting": "Hello, proxy!"}


def test_no_server_says_how_to_start_one(refused_url: str) -> None:
    result = runner.invoke(app, ["predict", "--url", refused_url, "-d", "{}"])
    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: no model server is answering at {refused_url}\n"
        "Hint: start one with `truss run DIR` (or point --url at a running server)\n"
    )


def test_a_host_name_that_does_not_resolve_is_named() -> None:
    # .invalid is reserved (RFC 2606): it never resolves.
    result = runner.invoke(app, ["predict", "--url", "http://no-such-host.invalid:8080", "-d", "{}"])
    assert result.exit_code == 1
    assert result.stderr.startswith(
        "Error: the host name 'no-such-host.invalid' in http://no-such-host.invalid:8080 does not resolve"
    ), result.stderr
    assert "no model server is answering" not in result.stderr


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        (["-d", "{name: world}"], "-d/--data: invalid JSON at line 1, column 2: Expecting property name"),
        (["-d", "{}", "-f", "input.json"], "cannot be used together"),
        ([], "no model input"),
        (["-f", "does-not-exist.json"], "-f/--file: does-not-exist.json: no such file"),
        (["--url", "localhost:8080", "-d", "{}"], "--url: expected an http(s) URL"),
        (["--url", "ftp://127.0.0.1:8080", "-d", "{}"], "--url: expected an http(s) URL"),
        (["--url", "http://[::1", "-d", "{}"], "--url: Invalid IPv6 URL"),
        (["--url", "http://127.0.0.1:80x", "-d", "{}"], "--url: Port could not be cast"),
    ],
)
def test_bad_input_exits_2_and_sends_nothing(arguments: list[str], expected: str, tmp_path: Path) -> None:
    (tmp_path / "input.json").write_text("{}")
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        # No server at all: exit 2 proves the input was rejected before any request.
        result = runner.invoke(app, ["predict", *arguments])
    finally:
        os.chdir(cwd)
    assert result.exit_code == 2, result.output
    assert expected in result.stderr.splitlines()[0]


def test_invalid_json_in_a_file_names_the_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{\n  "name": "x",\n}\n')
    result = runner.invoke(app, ["predict", "-f", str(bad)])
    assert result.exit_code == 2
    assert result.stderr.startswith(f"Error: {bad}: invalid JSON at line 3, column 1")


def test_an_example_from_the_model_directory_is_sent(hello: ModelServer) -> None:
    # The served copy has examples/hello's examples.yaml.
    result = runner.invoke(app, ["predict", "--url", hello.url, "--example", "nobody", "--model-dir", str(hello.model_dir)])
    assert result.exit_code == 0, result.output
    assert result.stdout == '{"greeting": "Hello, world!"}\n'


def test_an_example_is_found_in_the_current_directory_by_name_or_index(hello: ModelServer, tmp_path: Path, monkeypatch) -> None:
    model_dir = write_model_dir(tmp_path / "m", "class Model:\n    def predict(self, x):\n        return x\n", "examples_filename: samples.yaml\n")
    (model_dir / "samples.yaml").write_text("- name: ada\n  input: {name: Ada}\n- name: bob\n  input: {name: Bob}\n")
    monkeypatch.chdir(model_dir)
    by_name = runner.invoke(app, ["predict", "--url", hello.url, "--example", "bob"])
    by_index = runner.invoke(app, ["predict", "--url", hello.url, "-e", "0"])
    assert (by_name.exit_code, by_index.exit_code) == (0, 0), by_name.output + by_index.output
    assert (by_name.stdout, by_index.stdout) == ('{"greeting": "Hello, Bob!"}\n', '{"greeting": "Hello, Ada!"}\n')


@pytest.mark.parametrize(
    ("examples_yaml", "arguments", "expected"),
    [
        (None, ["--example", "x"], "m/examples.yaml: no such examples file"),
        ("name: x\ninput: 1\n", ["--example", "x"], "m/examples.yaml: expected a list of examples, got a mapping"),
        ("- name: x\n", ["--example", "x"], "m/examples.yaml: [0]: expected a mapping with name and input, missing input"),
        ("- input: 1\n- name: b\n  input: 2\n", ["--example", "b"], "m/examples.yaml: [0]: expected a mapping with name and input, missing name"),
        ("- name: a\n  input: 1\n- name: b\n  input: 2\n", ["--example", "c"],
         "m/examples.yaml: no example named 'c'; the examples are 'a', 'b' (or give a 0-based index below 2)"),
        ("", ["--example", "a"], "m/examples.yaml: no example named 'a': the file holds no examples"),
        ("- name: a\n  input: {when: 2024-01-01}\n", ["--example", "a"], "m/examples.yaml: [0].input: cannot be sent as JSON"),
        ("- name: a\n  input: [1\n", ["--example", "a"], "m/examples.yaml: line 3, column 1: invalid YAML"),
        ("- name: a\n  input: 1\n", ["--example", "a", "-d", "{}"], "-d/--data and --example cannot be used together"),
        ("- name: a\n  input: 1\n", ["-d", "{}", "--model-dir", "m"], "--model-dir only says where --example finds the examples"),
    ],
    ids=["missing", "not-a-list", "no-input", "no-name", "unknown-name", "empty", "yaml-date", "bad-yaml", "with-data", "model-dir-alone"],
)
def test_a_bad_example_exits_2_naming_the_file_and_sends_nothing(
    tmp_path: Path, monkeypatch, examples_yaml, arguments: list[str], expected: str
) -> None:
    model_dir = write_model_dir(tmp_path / "m", "class Model:\n    def predict(self, x):\n        return x\n")
    if examples_yaml is not None:
        (model_dir / "examples.yaml").write_text(examples_yaml)
    monkeypatch.chdir(tmp_path)
    # No server at all: exit 2 proves the input was rejected before any request.
    result = runner.invoke(app, ["predict", "--model-dir", "m", *arguments] if "--model-dir" not in arguments else ["predict", *arguments])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"Error: {expected}"), result.stderr
