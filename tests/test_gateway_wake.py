"""The routing table's side of scale to zero: a request that finds a deployment asleep asks
for one wake and parks; a stale tick that still says asleep does not release it or ask again;
a ready replica releases it. The wake route's answer for awake, asleep and unknown targets.
(End to end, through a real control plane: tests/test_controlplane_development.py.)
"""

from __future__ import annotations

import asyncio

from truss_cli.controlplane.gateway import Parked, Replica, Route, RoutingTable, UnknownTarget


def _table() -> tuple[RoutingTable, list[tuple[str, bool]]]:
    table = RoutingTable(park_timeout_seconds=5)
    calls: list[tuple[str, bool]] = []
    table.on_wake = lambda deployment_id, asleep: calls.append((deployment_id, asleep))
    table.set_model("m", {"development": [("dev", 1.0)], "production": [("prod", 1.0)]})
    table.set_replicas("prod", [Replica("p1", "http://127.0.0.1:1")])
    return table, calls


def test_a_request_for_a_sleeping_deployment_asks_one_wake_and_parks_until_a_replica_is_ready() -> None:
    async def scenario() -> None:
        table, calls = _table()
        table.set_replicas("dev", [], asleep=True)
        first = await table.resolve("m", "development")
        assert isinstance(first, Parked)
        assert calls == [("dev", True)]
        waiter = asyncio.ensure_future(first.ready())

        # A tick that began before the wake still says asleep: still parked, no second wake.
        table.set_replicas("dev", [], asleep=True)
        assert isinstance(await table.resolve("m", "development"), Parked)
        await asyncio.sleep(0)
        assert not waiter.done() and calls == [("dev", True)]

        table.set_replicas("dev", [], starting=True)  # WAKING_UP
        await asyncio.sleep(0)
        assert not waiter.done()
        table.set_replicas("dev", [Replica("d1", "http://127.0.0.1:2")])  # ACTIVE
        await asyncio.wait_for(waiter, 1)
        route = await table.resolve("m", "development")
        assert isinstance(route, Route) and route.deployments[0].replicas[0].id == "d1"

        # Production never sleeps and never asks.
        assert isinstance(await table.resolve("m", "production"), Route)
        assert calls == [("dev", True)]

    asyncio.run(scenario())


def test_the_wake_route_wakes_a_sleeping_target_and_only_restarts_the_idle_clock_of_an_awake_one() -> None:
    async def scenario() -> None:
        table, calls = _table()
        table.set_replicas("dev", [], asleep=True)
        assert table.wake("m", "development") == [("dev", True)]
        # Woken already (starting): the next request parks instead of asking again.
        assert isinstance(await table.resolve("m", "development"), Parked)
        assert calls == [("dev", True)]
        table.set_replicas("dev", [Replica("d1", "http://127.0.0.1:2")])
        assert table.wake("m", "development") == [("dev", False)]
        assert calls == [("dev", True), ("dev", False)]

        unknown = table.wake("m", "environments/staging")
        assert isinstance(unknown, UnknownTarget) and "its environments: production" in unknown.detail
        assert isinstance(table.wake("nope", "development"), UnknownTarget)
        table.set_inactive("dev", "deployment development is inactive")
        inactive = table.wake("m", "development")
        assert isinstance(inactive, UnknownTarget) and inactive.error_code == "DEPLOYMENT_INACTIVE"

    asyncio.run(scenario())
