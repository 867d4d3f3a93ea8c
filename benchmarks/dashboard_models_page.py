"""Server time of the dashboard's Models page with many models (issue 12: under 100 ms with 50).

    python benchmarks/dashboard_models_page.py [--models 50 500] [--rounds 200] [--database-url URL]

For each `--models` count, builds a store with that many models, two deployments each and a
day of hourly usage rows per deployment, then times what GET / does on the server for the
first page, the last page and a search (`?q=model-0`: all of 50, a fifth of 500): the session
lookup every page makes, the store reads (store/model_listing.py: the count, the page's
models, their deployments and last hour's usage) and the template rendering, in-process (no
HTTP: uvicorn's share is the same for every page). Prints p50/p95/max in ms.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

from truss_cli.controlplane.dashboard.models_page import PAGE_SIZE, models_page
from truss_cli.controlplane.dashboard.pages import page_link
from truss_cli.controlplane.dashboard.render import render
from truss_cli.controlplane.store import Store, UsageAccrual, states


def populate(store: Store, count: int) -> None:
    now = datetime.now(timezone.utc)
    for i in range(count):
        model = store.models.create(f"model-{i:03d}")
        store.models.describe(model.id, description=f"benchmark model number {i}")
        accruals = []
        for _ in range(2):
            deployment = store.deployments.create(model.id, config={"model_name": model.name},
                                                  status=states.INACTIVE, desired_replicas=0)
            accruals.append(UsageAccrual(deployment_id=deployment.id, model_id=model.id, model_name=model.name,
                                         deployment_name=deployment.name, replica_seconds=3600.0, requests=100))
        for hours_ago in range(24):
            store.usage.accrue(accruals, at=now - timedelta(hours=hours_ago))


def measure(store: Store, token: str, rounds: int, query: str, number: int) -> list[float]:
    plane = SimpleNamespace(store=store)
    times = []
    for _ in range(rounds + 20):
        started = time.perf_counter()
        assert store.dashboard_sessions.find(token) is not None
        listing = models_page(plane, query, number)  # type: ignore[arg-type]
        render("models.html", listing=listing, rows=listing.rows, q=query, bad_page=False, asked_page=str(number),
               page_size=PAGE_SIZE, page_link=page_link, csrf_token="x" * 43, page="models")
        times.append((time.perf_counter() - started) * 1000)
    assert listing.rows and listing.exists
    return sorted(times[20:])  # the first renders compile the templates


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", type=int, nargs="+", default=[50, 500])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    if args.database_url and len(args.models) > 1:
        parser.error("--database-url: give one --models count (each count needs an empty database)")
    for count in args.models:
        with tempfile.TemporaryDirectory() as directory, Store.open(Path(directory), args.database_url) as store:
            populate(store, count)
            token = store.dashboard_sessions.create(store.api_keys.create().key, timedelta(hours=1)).token
            last = -(-count // PAGE_SIZE)
            for label, query, number in (("first page", "", 1), (f"page {last} (last)", "", last),
                                         ("search q=model-0", "model-0", 1)):
                times = measure(store, token, args.rounds, query, number)
                print(f"{count} models, {label}, {args.rounds} rounds ({store.database.split(':')[0]}): "
                      f"p50 {statistics.median(times):.1f} ms, p95 {times[int(len(times) * 0.95)]:.1f} ms, "
                      f"max {times[-1]:.1f} ms")


if __name__ == "__main__":
    main()
