"""The session cookie's signature: a cookie this plane signed opens, any change to it does not,
and another plane's key (another data dir) does not either."""

from __future__ import annotations

import pytest

from truss_cli.controlplane.session_cookies import KEY_FILE_NAME, SessionCookies
from truss_cli.controlplane.store import Store, StoreError


def test_signed_cookies_unsign_and_tampered_ones_do_not(tmp_path):
    with Store.open(tmp_path / "a") as store, Store.open(tmp_path / "b") as other:
        cookies, foreign = SessionCookies.for_store(store), SessionCookies.for_store(other)
        value = cookies.sign("some-token")
        assert cookies.unsign(value) == "some-token"
        token, _, signature = value.rpartition(".")
        for forged in (f"{token}x.{signature}", f"{token}.{signature[::-1]}", token, f".{signature}", "", None):
            assert cookies.unsign(forged) is None, forged
        assert foreign.unsign(value) is None
        assert (tmp_path / "a" / KEY_FILE_NAME).stat().st_mode & 0o077 == 0
        # The key is made once and kept: a restarted plane still opens the cookies it signed.
        assert SessionCookies.for_store(store).unsign(value) == "some-token"


def test_a_session_key_others_can_read_is_refused_by_its_own_name(tmp_path):
    with Store.open(tmp_path / "a") as store:
        SessionCookies.for_store(store)
        (tmp_path / "a" / KEY_FILE_NAME).chmod(0o644)
        with pytest.raises(StoreError, match="the dashboard session key .* is readable by others"):
            SessionCookies.for_store(store)
