"""The control plane's gateway authorizer over a real store: keys it remembers between
requests still obey revocation at once, and an invoke key's models are checked every time."""

from __future__ import annotations

import asyncio
from pathlib import Path

from truss_cli.controlplane.auth import GatewayAuthorizer
from truss_cli.controlplane.store import Store


def test_a_revoked_key_is_refused_at_once_though_it_was_just_accepted(tmp_path: Path) -> None:
    with Store.open(tmp_path / "data") as store:
        authorize = GatewayAuthorizer(store)
        model = store.models.create("hello")
        admin = store.api_keys.create("admin")
        other = store.api_keys.create("admin")

        async def scenario() -> None:
            for _ in range(3):  # the first is looked up, the next ones are remembered
                assert await authorize(f"Api-Key {admin.plaintext}", model.id) is None
                assert await authorize(f"Bearer {other.plaintext}", model.id) is None
            await asyncio.to_thread(store.api_keys.revoke, admin.key.prefix)
            denial = await authorize(f"Api-Key {admin.plaintext}", model.id)
            assert denial is not None and denial.status == 401
            assert await authorize(f"Bearer {other.plaintext}", model.id) is None  # untouched
            assert (await authorize(None, model.id)).status == 401
            assert (await authorize(f"Api-Key {admin.key.prefix}.wrong", model.id)).status == 401

        asyncio.run(scenario())


def test_an_invoke_key_reaches_only_its_models_on_every_request(tmp_path: Path) -> None:
    with Store.open(tmp_path / "data") as store:
        authorize = GatewayAuthorizer(store)
        mine, theirs = store.models.create("mine"), store.models.create("theirs")
        scoped = store.api_keys.create("invoke", models=["mine"])
        header = f"Api-Key {scoped.plaintext}"

        async def scenario() -> None:
            for _ in range(3):
                assert await authorize(header, mine.id) is None
                refused = await authorize(header, theirs.id)
                assert refused is not None and refused.status == 403
                missing = await authorize(header, "no-such-model")
                assert missing is not None and missing.status == 403

        asyncio.run(scenario())
