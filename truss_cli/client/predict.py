"""One prediction request to a model server, and every way it can fail as a TrussError.

The answer is opened as a stream: a streaming model's chunks reach the caller as they
arrive, and a JSON answer is read whole.
"""

from __future__ import annotations

import json
import socket
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator
from urllib.parse import urlsplit

import httpx

from truss_cli.defaults import DEFAULT_URL
from truss_cli.errors import TrussError, UsageError
from truss_cli.net import is_loopback
from truss_cli.server.protocol import PREDICT_PATH

# Predictions may take minutes (large models, long generations); only connecting is bounded.
_TIMEOUT = httpx.Timeout(connect=5.0, read=None, write=60.0, pool=5.0)
_ERROR_BODY_LIMIT = 2000
_START_HINT = "start one with `truss run DIR` (or point --url at a running server)"


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


@dataclass
class Prediction:
    """A successful answer, open for reading."""

    _response: httpx.Response

    @property
    def is_json(self) -> bool:
        content_type = self._response.headers.get("content-type", "").split(";")[0].strip().lower()
        return content_type == "application/json"

    def json(self) -> Any:
        return json.loads(self._response.read())

    def iter_bytes(self) -> Iterator[bytes]:
        """The body's chunks as the server sends them (a streaming model's output)."""
        return self._response.iter_bytes()


@contextmanager
def predict(url: str, payload: Any) -> Iterator[Prediction]:
    """POST `payload` as JSON to the model server at `url` (base or full predict URL).

    Raises TrussError when the server cannot be reached, answers with an error, or breaks
    the connection mid-answer (also while the caller reads the stream).
    """
    endpoint = predict_url(url)
    try:
        # A proxy from the environment must not capture a server on this machine.
        with httpx.Client(timeout=_TIMEOUT, trust_env=not is_loopback(endpoint)) as client:
            with client.stream("POST", endpoint, json=payload) as response:
                if response.status_code >= 400:
                    raise _server_error(response)
                yield Prediction(response)
    except httpx.ConnectError as exc:
        raise _connect_error(url, exc) from None
    except httpx.ConnectTimeout:
        raise TrussError(f"connecting to {url} timed out", hint="check --url and that the server is running") from None
    except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
        raise TrussError(
            f"the connection to {url} broke before the response was complete ({exc})",
            hint="see the model server's log; a streaming predict that raises cuts its response off",
        ) from None
    except httpx.HTTPError as exc:
        raise TrussError(f"calling {endpoint} failed: {exc}") from None


def _connect_error(url: str, exc: httpx.ConnectError) -> TrussError:
    host = urlsplit(url).hostname or url
    if _caused_by(exc, socket.gaierror):
        return TrussError(
            f"the host name {host!r} in {url} does not resolve (no such host is known)",
            hint="check the host name in --url",
        )
    return TrussError(f"no model server is answering at {url}", hint=_START_HINT)


def _caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, kind):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _server_error(response: httpx.Response) -> TrussError:
    status = f"{response.status_code} {response.reason_phrase}".strip()
    message = _error_message(response.read())
    # "500 Internal Server Error: Internal Server Error: ..." says it twice.
    message = message.removeprefix(f"{response.reason_phrase}: ") if response.reason_phrase else message
    hint = None
    if response.status_code == 503:
        hint = "the model is not ready: wait until `truss run` prints the URL (or see its log if load() failed)"
    elif response.status_code >= 500:
        hint = "the model server's log has the traceback"
    text = f"the model server answered {status}"
    return TrussError(f"{text}: {message}" if message else text, hint=hint)


def _error_message(body: bytes) -> str:
    """The server's own message: the `error` of a JSON body, else the body's text, shortened."""
    text = body.decode("utf-8", errors="replace").strip()
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict):
        for key in ("error", "detail", "message"):
            if isinstance(data.get(key), str) and data[key].strip():
                text = data[key].strip()
                break
    if len(text) > _ERROR_BODY_LIMIT:
        text = text[:_ERROR_BODY_LIMIT] + "…"
    return text
