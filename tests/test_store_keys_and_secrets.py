"""API keys (hashed, shown once, scoped) and secrets (encrypted at rest, never printed)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import sqlalchemy as sa

from store_support import backend, database_url, store  # noqa: F401 (fixtures)
from truss_cli.controlplane.store import NotFound, Store, StoreError


def _database_bytes(store: Store) -> bytes:
    """Everything the database holds, as an attacker with a dump would see it."""
    with store.engine.connect() as db:
        rows = [db.execute(sa.text(f"SELECT * FROM {table}")).all() for table in ("api_keys", "secrets")]
    dump = repr(rows).encode()
    sqlite_file = store.data_dir / "controlplane.db"
    for path in (sqlite_file, sqlite_file.with_name(sqlite_file.name + "-wal")):
        if path.exists():
            dump += path.read_bytes()
    return dump


def test_a_key_is_shown_once_and_only_its_hash_is_kept(store: Store):
    created = store.api_keys.create(name="laptop")
    prefix, _, secret = created.plaintext.partition(".")
    assert prefix == created.key.prefix and len(secret) >= 43
    assert secret not in repr(created)
    assert secret.encode() not in _database_bytes(store)
    assert created.plaintext not in repr(store.api_keys.list())


def test_authenticate_accepts_the_key_and_nothing_like_it(store: Store):
    created = store.api_keys.create()
    other = store.api_keys.create()
    key = store.api_keys.authenticate(created.plaintext)
    assert key is not None and key.id == created.key.id and key.is_admin
    tampered = created.plaintext[:-1] + ("A" if created.plaintext[-1] != "A" else "B")
    swapped = f"{other.key.prefix}.{created.plaintext.partition('.')[2]}"
    for wrong in (tampered, swapped, created.key.prefix, "", "nodot", "x.y", created.plaintext + "x"):
        assert store.api_keys.authenticate(wrong) is None, wrong


def test_a_revoked_key_stops_working_and_leaves_the_listing(store: Store):
    created = store.api_keys.create()
    store.api_keys.revoke(created.key.prefix)
    assert store.api_keys.authenticate(created.plaintext) is None
    assert store.api_keys.list() == []
    assert [k.revoked_at is not None for k in store.api_keys.list(include_revoked=True)] == [True]
    with pytest.raises(NotFound):
        store.api_keys.revoke(created.key.prefix)


def test_use_is_recorded_for_the_listing(store: Store):
    created = store.api_keys.create()
    assert store.api_keys.list()[0].last_used_at is None
    store.api_keys.authenticate(created.plaintext)
    assert store.api_keys.list()[0].last_used_at is not None


def test_an_invoke_key_may_call_only_its_models(store: Store):
    limited = store.api_keys.create(scope="invoke", models=["hello"]).key
    anything = store.api_keys.create(scope="invoke").key
    assert not limited.is_admin and limited.may_invoke("hello") and not limited.may_invoke("other")
    assert anything.may_invoke("other")
    found = store.api_keys.authenticate(store.api_keys.create(scope="invoke", models=["a", "b"]).plaintext)
    assert found.models == ("a", "b")
    with pytest.raises(StoreError, match="only an invoke key"):
        store.api_keys.create(scope="admin", models=["hello"])
    with pytest.raises(StoreError, match="unknown scope"):
        store.api_keys.create(scope="root")


def test_secrets_round_trip_and_list_names_only(store: Store):
    store.secrets.set("hf_access_token", "hf_s3cr3t_välue")
    store.secrets.set("other", "x")
    store.secrets.set("hf_access_token", "hf_new_välue")  # replace
    assert [s.name for s in store.secrets.list()] == ["hf_access_token", "other"]
    found, missing = store.secrets.resolve(["hf_access_token", "not_set"])
    assert found["hf_access_token"].reveal() == "hf_new_välue"
    assert missing == ["not_set"]
    store.secrets.delete("other")
    with pytest.raises(NotFound) as caught:
        store.secrets.get("other")
    assert "hf_access_token" in caught.value.hint
    with pytest.raises(StoreError, match="invalid secret name"):
        store.secrets.set("no spaces", "v")


def test_secret_values_are_encrypted_at_rest_and_never_printed(store: Store):
    store.secrets.set("token", "plain-text-that-must-not-leak")
    assert b"plain-text-that-must-not-leak" not in _database_bytes(store)
    value = store.secrets.get("token")
    assert "plain-text" not in repr(value) and "plain-text" not in f"{value}"
    assert "plain-text" not in repr(store.secrets.resolve(["token"]))
    key_file = store.data_dir / "secrets.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


def test_a_value_moved_to_another_name_does_not_decrypt(store: Store):
    store.secrets.set("a", "alpha")
    store.secrets.set("b", "beta")
    with store.engine.begin() as db:
        blob = db.execute(sa.text("SELECT ciphertext FROM secrets WHERE name = 'a'")).scalar()
        db.execute(sa.text("UPDATE secrets SET ciphertext = :c WHERE name = 'b'"), {"c": blob})
    with pytest.raises(StoreError, match="cannot be decrypted"):
        store.secrets.get("b")


def test_secrets_survive_a_reopen_and_need_their_key_file(tmp_path: Path, database_url: str | None):
    with Store.open(tmp_path / "data", database_url) as first:
        first.secrets.set("token", "v1")
    with Store.open(tmp_path / "data", database_url) as second:
        assert second.secrets.get("token").reveal() == "v1"
    (tmp_path / "data" / "secrets.key").unlink()
    with Store.open(tmp_path / "data", database_url) as rekeyed:
        with pytest.raises(StoreError, match="cannot be decrypted") as caught:
            rekeyed.secrets.get("token")
        assert "v1" not in str(caught.value)


def test_a_key_file_others_can_read_is_refused(tmp_path: Path):
    Store.open(tmp_path / "data").close()
    os.chmod(tmp_path / "data" / "secrets.key", 0o644)
    with pytest.raises(StoreError, match="readable by others") as caught:
        Store.open(tmp_path / "data")
    assert "chmod 600" in caught.value.hint
