"""~/.trussrc as truss-cli keeps it: Truss's format, other tools' sections kept, mode 0600."""

from __future__ import annotations

import configparser
import stat
from pathlib import Path

import pytest

from truss_cli.client.remotes import (
    NoRemote,
    add_remote,
    read_remotes,
    remove_remote,
    trussrc_path,
    use_remote,
)
from truss_cli.errors import UsageError

BASETEN = "[baseten]\nremote_provider = baseten\napi_key = bt.secret-0123456789\nremote_url = https://app.baseten.co\n"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_remotes_are_written_as_truss_reads_them_next_to_its_own(tmp_path: Path) -> None:
    path = trussrc_path(tmp_path)
    path.write_text(BASETEN)
    add_remote(path, "home", "http://127.0.0.1:8800/", "tc_key_abcdefghijkl", use=True)
    # As Truss's remote factory reads it: every section is a remote with the three keys.
    truss = configparser.ConfigParser()
    truss.read(path)
    assert truss.sections() == ["baseten", "home"]
    assert dict(truss["baseten"]) == {
        "remote_provider": "baseten", "api_key": "bt.secret-0123456789", "remote_url": "https://app.baseten.co"
    }
    assert {"remote_provider": "truss-cli", "remote_url": "http://127.0.0.1:8800", "api_key": "tc_key_abcdefghijkl"}.items() <= dict(truss["home"]).items()
    assert mode(path) == 0o600


def test_the_remote_in_use_is_chosen_explicitly_or_is_the_only_one(tmp_path: Path) -> None:
    path = trussrc_path(tmp_path)
    with pytest.raises(NoRemote, match="no remote configured"):
        read_remotes(path).resolve(None)
    add_remote(path, "a", "http://a:1", "key-aaaaaaaaaaaa")
    assert read_remotes(path).resolve(None).name == "a"  # the only one
    add_remote(path, "b", "https://b.example.com", "key-bbbbbbbbbbbb")
    with pytest.raises(UsageError, match="several remotes and none in use: a, b") as caught:
        read_remotes(path).resolve(None)
    assert "truss remote use NAME" in (caught.value.hint or "")
    use_remote(path, "b")
    assert read_remotes(path).resolve(None).name == "b"
    assert read_remotes(path).resolve("a").url == "http://a:1"
    use_remote(path, "a")
    assert [remote.name for remote in read_remotes(path).remotes if remote.is_default] == ["a"]
    remove_remote(path, "a")
    assert read_remotes(path).resolve(None).name == "b"  # the only one again
    with pytest.raises(UsageError, match=r"no remote named 'a' \(configured: b\)"):
        use_remote(path, "a")


def test_adding_an_existing_name_needs_replace_and_keeps_the_choice(tmp_path: Path) -> None:
    path = trussrc_path(tmp_path)
    add_remote(path, "local", "http://127.0.0.1:8800", "key-111111111111", use=True)
    add_remote(path, "other", "http://o:1", "key-222222222222")
    with pytest.raises(UsageError, match=r"a remote named 'local' exists already \(http://127.0.0.1:8800\)"):
        add_remote(path, "local", "http://127.0.0.1:9900", "key-333333333333")
    replaced = add_remote(path, "local", "http://127.0.0.1:9900", "key-333333333333", replace=True)
    assert (replaced.url, replaced.api_key, replaced.is_default) == ("http://127.0.0.1:9900", "key-333333333333", True)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("127.0.0.1:8800", "expected an http(s) URL"),
        ("ftp://host", "expected an http(s) URL"),
        ("http://host:port", "remote URL 'http://host:port'"),
        ("http://user:pw@host", "has credentials in it"),
        ("http://host/?a=1", "has a query or fragment"),
    ],
)
def test_bad_urls_are_refused_by_what_is_wrong(tmp_path: Path, url: str, message: str) -> None:
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)").replace("?", r"\?")):
        add_remote(trussrc_path(tmp_path), "r", url, "key-000000000000")
    assert not trussrc_path(tmp_path).exists()


@pytest.mark.parametrize(("name", "key"), [("bad name", "k" * 12), ("DEFAULT", "k" * 12), ("[x]", "k" * 12), ("ok", "has space"), ("ok", "")])
def test_bad_names_and_keys_are_refused(tmp_path: Path, name: str, key: str) -> None:
    with pytest.raises(UsageError, match="remote name|API key"):
        add_remote(trussrc_path(tmp_path), name, "http://h:1", key)


def test_a_file_others_can_read_is_narrowed_to_0600_with_a_warning(tmp_path: Path) -> None:
    path = trussrc_path(tmp_path)
    path.write_text(BASETEN)
    path.chmod(0o644)  # as Truss writes it
    remotes = read_remotes(path)
    assert mode(path) == 0o600
    assert len(remotes.warnings) == 1 and "mode 644" in remotes.warnings[0] and "now 0600" in remotes.warnings[0]
    assert read_remotes(path).warnings == ()


def test_keys_are_shown_by_a_prefix_and_never_in_a_repr(tmp_path: Path) -> None:
    path = trussrc_path(tmp_path)
    remote = add_remote(path, "r", "http://h:1", "tc_0123456789abcdefghij")
    assert remote.key_prefix == "tc_0123…"  # a third of the key at most, and never more than 8 characters
    assert "abcdefghij" not in repr(remote) and "abcdefghij" not in repr(read_remotes(path))


def test_a_link_to_the_file_is_followed_not_replaced(tmp_path: Path) -> None:
    real = tmp_path / "dotfiles" / "trussrc"
    real.parent.mkdir()
    real.write_text(BASETEN)
    path = trussrc_path(tmp_path)
    path.symlink_to(real)
    add_remote(path, "r", "http://h:1", "key-000000000000")
    assert path.is_symlink() and "[r]" in real.read_text() and mode(real) == 0o600


def test_an_unreadable_file_is_named(tmp_path: Path) -> None:
    path = trussrc_path(tmp_path)
    path.write_text("remote_url = http://no-section\n")
    path.chmod(0o600)
    with pytest.raises(UsageError, match=r"\.trussrc: not a valid \.trussrc"):
        read_remotes(path)
