"""truss_cli.downloads against a real HTTP server: caching, retries, errors, partial bodies."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import pytest

from file_server import FileServer, file_server
from truss_cli.downloads import DownloadError, RetryPolicy, cache_entry, cached, fetch

QUICK = RetryPolicy(attempts=3, backoff_seconds=0.01)
BODY = os.urandom(300_000)


@pytest.fixture
def server() -> Iterator[FileServer]:
    with file_server() as running:
        running.files["/weights.bin"] = BODY
        yield running


def test_a_download_lands_in_the_cache_and_a_second_fetch_asks_nothing(server: FileServer, tmp_path: Path) -> None:
    url = server.url("/weights.bin")
    progress: list[tuple[int, int | None]] = []
    first = fetch(url, tmp_path, "external_data[0]", on_progress=lambda done, total: progress.append((done, total)))
    assert first.path.read_bytes() == BODY
    assert first.size == len(BODY)
    assert first.etag is not None
    assert progress[-1] == (len(BODY), len(BODY))
    second = fetch(url, tmp_path, "external_data[0]")
    assert second.path == first.path and second.sha256 == first.sha256
    assert server.requests["/weights.bin"] == 1


def test_a_cached_file_altered_on_disk_is_downloaded_again(server: FileServer, tmp_path: Path) -> None:
    url = server.url("/weights.bin")
    first = fetch(url, tmp_path, "item")
    first.path.write_bytes(b"x" * len(BODY))  # same size, other content
    assert cached(tmp_path, url) is None
    again = fetch(url, tmp_path, "item")
    assert again.path.read_bytes() == BODY
    assert server.requests["/weights.bin"] == 2


def test_5xx_answers_are_retried_until_the_file_arrives(server: FileServer, tmp_path: Path) -> None:
    server.fail_first["/weights.bin"] = 2
    waits: list[float] = []
    result = fetch(server.url("/weights.bin"), tmp_path, "item", retry=QUICK, sleep=waits.append)
    assert result.path.read_bytes() == BODY
    assert server.requests["/weights.bin"] == 3
    assert waits == [0.01, 0.02]  # backing off: each wait doubles


def test_a_server_that_keeps_failing_gives_up_naming_the_url_and_the_status(server: FileServer, tmp_path: Path) -> None:
    server.fail_first["/weights.bin"] = 10
    url = server.url("/weights.bin")
    with pytest.raises(DownloadError) as caught:
        fetch(url, tmp_path, "external_data[1]", retry=QUICK, sleep=lambda seconds: None)
    assert caught.value.message == f"external_data[1]: {url} answered 503 Service Unavailable (gave up after 3 attempts)"
    assert server.requests["/weights.bin"] == 3


def test_404_fails_at_once_naming_the_url(server: FileServer, tmp_path: Path) -> None:
    url = server.url("/missing.bin")
    with pytest.raises(DownloadError) as caught:
        fetch(url, tmp_path, "external_data[0]", retry=QUICK, sleep=lambda seconds: None)
    assert caught.value.message == f"external_data[0]: {url} answered 404 Not Found"
    assert server.requests["/missing.bin"] == 1
    assert not cache_entry(tmp_path, url).exists()


def test_a_body_cut_short_is_never_trusted(server: FileServer, tmp_path: Path) -> None:
    server.cut_short.add("/weights.bin")
    url = server.url("/weights.bin")
    with pytest.raises(DownloadError) as caught:
        fetch(url, tmp_path, "item", retry=QUICK, sleep=lambda seconds: None)
    assert caught.value.message.startswith(f"item: {url} ")
    assert "gave up after 3 attempts" in caught.value.message
    # Nothing is left behind that a later run could mistake for the file.
    assert cached(tmp_path, url) is None
    assert list((tmp_path / "downloads").iterdir()) == []
    server.cut_short.clear()
    assert fetch(url, tmp_path, "item").path.read_bytes() == BODY


def test_nothing_listening_is_a_clear_error(tmp_path: Path) -> None:
    with file_server() as gone:
        url = gone.url("/a")
    with pytest.raises(DownloadError) as caught:
        fetch(url, tmp_path, "external_data[0]", retry=QUICK, sleep=lambda seconds: None)
    assert caught.value.message.startswith(f"external_data[0]: {url} could not be read: connection failed")


def test_an_interrupted_download_leaves_nothing_behind(server: FileServer, tmp_path: Path) -> None:
    url = server.url("/weights.bin")

    def interrupt(done: int, total: int | None) -> None:
        if done > 0:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fetch(url, tmp_path, "item", on_progress=interrupt)
    assert list((tmp_path / "downloads").iterdir()) == []
    assert fetch(url, tmp_path, "item").path.read_bytes() == BODY
