"""config.yaml's `external_data`: what a download may be, and where it may land."""

from __future__ import annotations

import pytest

from truss_cli.config import ConfigError, parse_config


def errors_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(text)
    return str(caught.value).splitlines()


def test_truss_items_are_read_with_their_defaults() -> None:
    config = parse_config(
        "external_data:\n"
        "  - url: https://example.com/weights.bin\n"
        "    local_data_path: weights/model.bin\n"
        "    name: weights\n"
        "  - url: http://example.com/vocab.txt\n"
        "    local_data_path: ./vocab.txt\n"
    ).config
    first, second = config.external_data
    assert (first.url, first.local_data_path, first.name, first.backend) == (
        "https://example.com/weights.bin", "weights/model.bin", "weights", "http_public"
    )
    assert second.local_data_path == "vocab.txt"  # normalised: the same file as "./vocab.txt"


def test_no_external_data_is_an_empty_list() -> None:
    assert parse_config("external_data:\n").config.external_data == []
    assert parse_config("{}").config.external_data == []


@pytest.mark.parametrize("path", ["../outside.bin", "/etc/passwd", "", "a/../../b", ".", "C:/weights.bin"])
def test_a_path_that_leaves_the_data_directory_is_refused_naming_the_item(path: str) -> None:
    text = (
        "external_data:\n"
        "  - {url: https://example.com/a, local_data_path: a}\n"
        "  - {url: https://example.com/b, local_data_path: b}\n"
        f"  - {{url: https://example.com/c, local_data_path: '{path}'}}\n"
    )
    [error] = errors_of(text)
    assert error.startswith("config.yaml: external_data[2].local_data_path: expected a file path relative to the data directory")
    assert error.endswith(f'got "{path}"')


@pytest.mark.parametrize("url", ["ftp://example.com/a", "s3://bucket/a", "example.com/a", "https://"])
def test_only_http_urls_are_accepted(url: str) -> None:
    [error] = errors_of(f"external_data:\n  - {{url: '{url}', local_data_path: a}}\n")
    assert error == f'config.yaml: external_data[0].url: expected an http:// or https:// URL, got "{url}"'


def test_a_backend_other_than_http_public_is_refused_saying_what_is_supported() -> None:
    [error] = errors_of("external_data:\n  - {url: 'https://e.com/a', local_data_path: a, backend: gcs}\n")
    assert error == (
        'config.yaml: external_data[0].backend: only "http_public" (a public http(s) URL) is supported, got "gcs"'
    )


def test_missing_required_keys_are_named() -> None:
    errors = errors_of("external_data:\n  - {url: 'https://e.com/a'}\n  - {local_data_path: a}\n")
    assert errors == [
        "config.yaml: external_data[0].local_data_path: required",
        "config.yaml: external_data[1].url: required",
    ]


def test_two_downloads_to_one_path_are_refused() -> None:
    [error] = errors_of(
        "external_data:\n"
        "  - {url: 'https://e.com/a', local_data_path: w.bin}\n"
        "  - {url: 'https://e.com/b', local_data_path: ./w.bin}\n"
    )
    assert error == (
        'config.yaml: external_data[1].local_data_path: "w.bin" is already the path of external_data[0]; '
        "each download needs its own path"
    )


def test_a_download_inside_another_downloads_file_is_refused() -> None:
    [error] = errors_of(
        "external_data:\n"
        "  - {url: 'https://e.com/a', local_data_path: weights/a.bin}\n"
        "  - {url: 'https://e.com/b', local_data_path: weights}\n"
    )
    assert "external_data[1].local_data_path" in error and "one is inside the other" in error
