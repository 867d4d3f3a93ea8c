"""`truss predict`: call a running model server and print its answer (streams as it arrives)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Optional
from urllib.parse import urlsplit

import httpx
import typer

from truss_cli.cli import console
from truss_cli.defaults import DEFAULT_URL
from truss_cli.errors import TrussError, UsageError
from truss_cli.net import is_loopback
from truss_cli.server.protocol import PREDICT_PATH

# Predictions may take minutes (large models, long generations); only connecting is bounded.
_TIMEOUT = httpx.Timeout(connect=5.0, read=None, write=60.0, pool=5.0)
_ERROR_BODY_LIMIT = 2000


def predict(
    data: Optional[str] = typer.Option(None, "--data", "-d", help="The model input as a JSON string, e.g. '{\"name\": \"world\"}'."),
    file: Optional[Path] = typer.Option(
        None, "--file", "-f", help="Read the model input (JSON) from this file; '-' reads standard input.", allow_dash=True
    ),
    url: str = typer.Option(
        DEFAULT_URL, "--url", help="The model server: its base URL (the predict path is added) or a full predict URL."
    ),
) -> None:
    """Send one prediction request to a running model server and print the result.

    JSON results are printed as JSON (indented on a terminal, one line otherwise); a streaming model's chunks are printed as they arrive. Start a server with `truss run DIR`.
    """
    payload = _read_input(data, file)
    endpoint = predict_url(url)
    try:
        with httpx.Client(timeout=_TIMEOUT, trust_env=not is_loopback(endpoint)) as client:
            with client.stream("POST", endpoint, json=payload) as response:
                if response.status_code >= 400:
                    _fail_with_server_error(response)
                _print_response(response)
    except httpx.ConnectError:
        raise TrussError(
            f"no model server is answering at {url}",
            hint="start one with `truss run DIR` (or point --url at a running server)",
        ) from None
    except httpx.ConnectTimeout:
        raise TrussError(f"connecting to {url} timed out", hint="check --url and that the server is running") from None
    except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
        raise TrussError(
            f"the connection to {url} broke before the response was complete ({exc})",
            hint="see the model server's log; a streaming predict that raises cuts its response off",
        ) from None
    except httpx.HTTPError as exc:
        raise TrussError(f"calling {endpoint} failed: {exc}") from None


def predict_url(url: str) -> str:
    """A base URL gets the predict path; a URL that already has a path is used as given."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError as exc:
        raise UsageError(f"--url: {exc}: expected an http(s) URL such as {DEFAULT_URL}, got {url!r}") from None
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise UsageError(f"--url: expected an http(s) URL such as {DEFAULT_URL}, got {url!r}")
    if parts.path in ("", "/"):
        return url.rstrip("/") + PREDICT_PATH
    return url


def _read_input(data: Optional[str], file: Optional[Path]) -> Any:
    if data is not None and file is not None:
        raise UsageError("-d/--data and -f/--file cannot be used together; give the input once")
    if data is None and file is None:
        raise UsageError("no model input: pass it with -d '<json>' or -f FILE", hint="e.g. truss predict -d '{\"name\": \"world\"}'")
    if data is not None:
        return _parse_json(data, "-d/--data")
    assert file is not None
    if str(file) == "-":
        return _parse_json(sys.stdin.read(), "standard input (-f -)")
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"-f/--file: {file}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"-f/--file: {file}: cannot read it ({exc})") from None
    return _parse_json(text, str(file))


def _parse_json(text: str, source: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{source}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None


def _fail_with_server_error(response: httpx.Response) -> None:
    body = response.read().decode("utf-8", errors="replace").strip()
    if len(body) > _ERROR_BODY_LIMIT:
        body = body[:_ERROR_BODY_LIMIT] + "…"
    hint = None
    if response.status_code == 503:
        hint = "the model is not ready: wait until `truss run` prints the URL (or see its log if load() failed)"
    elif response.status_code >= 500:
        hint = "the model server's log has the traceback"
    raise TrussError(f"the server answered {response.status_code} {response.reason_phrase}: {body}", hint=hint)


def _print_response(response: httpx.Response) -> None:
    content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/json":
        result = json.loads(response.read())
        if console.out.is_terminal:
            console.out.print_json(data=result)
        else:
            sys.stdout.write(json.dumps(result, ensure_ascii=False) + "\n")
        return
    # Streamed (text, JSON lines, bytes): write each chunk the moment it arrives.
    # Bytes go out unchanged (a model may stream binary); a UTF-8 character split across
    # two chunks is reassembled by the terminal, not mangled here.
    sys.stdout.flush()
    binary_out = sys.stdout.buffer
    last = b"\n"
    for chunk in response.iter_bytes():
        if chunk:
            binary_out.write(chunk)
            binary_out.flush()
            last = chunk
    if not last.endswith(b"\n") and sys.stdout.isatty():
        binary_out.write(b"\n")
        binary_out.flush()
