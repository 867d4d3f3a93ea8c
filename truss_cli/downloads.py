"""Downloading files by URL into a cache, once.

A URL's content is fetched the first time it is asked for and kept under
`<cache>/downloads/<hash of the URL>/` with a record of what arrived (sha256, size, ETag,
Last-Modified). Later requests for the same URL use the cached file without asking the
server anything: like Docker's layer cache for Truss's `curl` lines, a URL is taken to name
fixed content (point it at a new URL, or delete the cache entry, to fetch a new version).
Before a cached file is used it is checked against its record: its size, and its sha256
again whenever the file's identity (mtime, inode) changed since it was recorded, so a file
edited in the cache is downloaded again instead of trusted.

Nothing partial is ever trusted: a download is written into a staging directory, fsync'ed,
and renamed into place with its record only when the whole body arrived (an interrupted
or cut-off transfer, Ctrl-C included, leaves no entry). Connection errors, 5xx and 429
answers are retried with backoff; other statuses (404, 403, ...) fail at once.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import httpx

from truss_cli.errors import TrussError
from truss_cli.paths import atomic_directory

_RECORD = "record.json"
_CONTENT = "content"
_RECORD_VERSION = 1
_CHUNK = 1024 * 1024
DEFAULT_ATTEMPTS = 5
DEFAULT_BACKOFF_SECONDS = 1.0
_MAX_BACKOFF_SECONDS = 30.0
_TIMEOUT = httpx.Timeout(30.0, read=120.0)

# (bytes received so far, total size if the server said, or None)
ProgressCallback = Callable[[int, Optional[int]], None]


class DownloadError(TrussError):
    """A URL that could not be fetched; the message names it and what went wrong."""


@dataclass(frozen=True)
class CachedFile:
    url: str
    path: Path  # the complete content, in the cache
    sha256: str
    size: int
    etag: Optional[str] = None
    last_modified: Optional[str] = None


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = DEFAULT_ATTEMPTS
    backoff_seconds: float = DEFAULT_BACKOFF_SECONDS  # doubled after each failed attempt


def cache_entry(cache_dir: Path, url: str) -> Path:
    return cache_dir / "downloads" / hashlib.sha256(url.encode()).hexdigest()[:32]


def cached(cache_dir: Path, url: str) -> Optional[CachedFile]:
    """The cached content of `url` if there is a complete, unaltered one; else None."""
    entry = cache_entry(cache_dir, url)
    try:
        record = json.loads((entry / _RECORD).read_text(encoding="utf-8"))
        if record.get("version") != _RECORD_VERSION or record["url"] != url:
            return None
        content = entry / _CONTENT
        st = content.stat()
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if st.st_size != record["size"]:
        return None
    if [st.st_mtime_ns, st.st_ino] != record["identity"]:
        # Touched since it was recorded (or copied): only its content can say it is still right.
        if _sha256_of(content) != record["sha256"]:
            return None
    return CachedFile(url, content, record["sha256"], record["size"], record.get("etag"), record.get("last_modified"))


def fetch(
    url: str,
    cache_dir: Path,
    label: str,
    on_progress: ProgressCallback = lambda received, total: None,
    retry: RetryPolicy = RetryPolicy(),
    sleep: Callable[[float], None] = time.sleep,
) -> CachedFile:
    """The content of `url`, from the cache or downloaded into it.

    `label` starts every error message (`external_data[0]: https://... answered 404 Not
    Found`). Raises DownloadError once the attempts are used up or on a status not worth
    retrying.
    """
    found = cached(cache_dir, url)
    if found is not None:
        return found
    entry = cache_entry(cache_dir, url)
    if entry.exists():  # incomplete or altered: replaced as a whole
        shutil.rmtree(entry, ignore_errors=True)
    delay = retry.backoff_seconds
    for attempt in range(1, retry.attempts + 1):
        try:
            return _download(url, entry, on_progress)
        except _Retryable as exc:
            if attempt == retry.attempts:
                raise DownloadError(
                    f"{label}: {url} {exc.reason} (gave up after {retry.attempts} attempts)",
                    hint="check that the URL is reachable from this machine, then run again",
                ) from None
            sleep(exc.retry_after if exc.retry_after is not None else delay)
            delay = min(delay * 2, _MAX_BACKOFF_SECONDS)
        except _Final as exc:
            raise DownloadError(f"{label}: {url} {exc.reason}", hint=exc.hint) from None
        except OSError as exc:
            raise DownloadError(
                f"{label}: {url}: cannot write the download into {entry.parent}: {exc.strerror or exc}"
            ) from None
    raise AssertionError("unreachable")


class _Retryable(Exception):
    def __init__(self, reason: str, retry_after: Optional[float] = None):
        self.reason = reason
        self.retry_after = retry_after


class _Final(Exception):
    def __init__(self, reason: str, hint: Optional[str] = None):
        self.reason = reason
        self.hint = hint


def _download(url: str, entry: Path, on_progress: ProgressCallback) -> CachedFile:
    # A staging directory beside the entry: on any failure (Ctrl-C included) it is removed,
    # and the entry appears, content and record together, only once the body is complete.
    with atomic_directory(entry) as staging:
        content = staging / _CONTENT
        try:
            with httpx.Client(follow_redirects=True, timeout=_TIMEOUT) as client:
                with client.stream("GET", url, headers={"Accept-Encoding": "identity"}) as response:
                    _check_status(response)
                    total = _content_length(response)
                    digest, size = _write_body(response, content, total, on_progress)
                    etag = response.headers.get("etag")
                    last_modified = response.headers.get("last-modified")
        except httpx.TransportError as exc:
            raise _Retryable(f"could not be read: {_describe_transport_error(exc)}") from None
        except httpx.InvalidURL as exc:
            raise _Final(f"is not a valid URL: {exc}") from None
        if total is not None and size != total:
            raise _Retryable(f"sent {size} of {total} bytes before the connection ended")
        st = content.stat()
        record = {
            "version": _RECORD_VERSION,
            "url": url,
            "sha256": digest,
            "size": size,
            "etag": etag,
            "last_modified": last_modified,
            # After the rename the inode stays and so does the mtime: `cached` compares them.
            "identity": [st.st_mtime_ns, st.st_ino],
        }
        (staging / _RECORD).write_text(json.dumps(record, indent=1), encoding="utf-8")
    return CachedFile(url, entry / _CONTENT, digest, size, etag, last_modified)


def _check_status(response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    reason = f"answered {response.status_code} {response.reason_phrase}".rstrip()
    if response.status_code >= 500 or response.status_code == 429:
        raise _Retryable(reason, _retry_after(response))
    hint = "the URL must be public: no credentials are sent" if response.status_code in (401, 403) else None
    raise _Final(reason, hint)


def _write_body(
    response: httpx.Response, target: Path, total: Optional[int], on_progress: ProgressCallback
) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    on_progress(0, total)
    with open(target, "wb") as output:
        for chunk in response.iter_raw(_CHUNK):
            output.write(chunk)
            digest.update(chunk)
            size += len(chunk)
            on_progress(size, total)
        output.flush()
        os.fsync(output.fileno())  # the rename must never publish bytes still in flight
    return digest.hexdigest(), size


def _content_length(response: httpx.Response) -> Optional[int]:
    if response.headers.get("content-encoding", "identity") != "identity":
        return None  # the length of an encoded body is not the length of the file
    try:
        return int(response.headers["content-length"])
    except (KeyError, ValueError):
        return None


def _retry_after(response: httpx.Response) -> Optional[float]:
    try:
        return min(float(response.headers["retry-after"]), _MAX_BACKOFF_SECONDS)
    except (KeyError, ValueError):
        return None


def _describe_transport_error(exc: httpx.TransportError) -> str:
    if isinstance(exc, httpx.ConnectError):
        return f"connection failed ({exc})"
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    if isinstance(exc, httpx.RemoteProtocolError):
        return f"the connection broke off ({exc})"
    return str(exc) or type(exc).__name__


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()
