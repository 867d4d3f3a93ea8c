"""Server time of the dashboard's Development tab and of its live part (polled every 2 s by
every open tab), with 50 models around it and the 50 syncs the store keeps (issue 12: every
page under 100 ms with 50 models).

    python benchmarks/dashboard_development_page.py [--models 50] [--rounds 200] [--database-url URL]

Times what GET /models/{id}/development does on the server, in-process: the session lookup,
the store reads (model, development deployment, its last 50 syncs of 20 paths each), the idle
clock and the rendering of the whole page. Prints p50/p95/max in ms.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

from truss_cli.controlplane.dashboard.development_page import POLL_SECONDS, development_tab
from truss_cli.controlplane.dashboard.render import render
from truss_cli.controlplane.development import DevelopmentLifecycle
from truss_cli.controlplane.store import Store, states
from truss_cli.controlplane.store.dev_syncs import KEEP, changes_between


def populate(store: Store, count: int) -> str:
    """`count` models with a development deployment each and KEEP syncs on the first; its id."""
    first = None
    for i in range(count):
        model = store.models.create(f"model-{i:03d}")
        deployment = store.deployments.create(model.id, config={}, archive_sha256="a" * 64, is_development=True,
                                              status=states.ACTIVE)
        first = first or (model.id, deployment.id)
    model_id, deployment_id = first  # type: ignore[misc]
    new = {f"model/file_{i:03d}.py": (str(i), 0o644) for i in range(40)}
    for i in range(KEEP):
        store.dev_syncs.record(deployment_id, from_tree="a" * 64, to_tree=f"{i:064x}", changes=changes_between({}, new),
                               action="hot_swap", reason="only function bodies of model code changed", ms=40.0 + i)
    return model_id


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory, Store.open(Path(directory), args.database_url) as store:
        model_id = populate(store, args.models)
        plane = SimpleNamespace(store=store, reconciler=SimpleNamespace(
            development=DevelopmentLifecycle(store, None, None, 900.0)))  # type: ignore[arg-type]
        token = store.dashboard_sessions.create(store.api_keys.create().key, timedelta(hours=1)).token
        for name, template in (("page", "model_development.html"), ("live part", "development_live.html")):
            times = []
            for _ in range(args.rounds + 20):
                started = time.perf_counter()
                assert store.dashboard_sessions.find(token) is not None
                tab = development_tab(plane, model_id, "http://127.0.0.1:8800")  # type: ignore[arg-type]
                render(template, model=tab.model, tab="development", dev=tab, csrf_token="x" * 43, page="models",
                       poll_seconds=POLL_SECONDS)
                times.append((time.perf_counter() - started) * 1000)
            assert tab is not None and len(tab.syncs) == KEEP
            times = sorted(times[20:])  # the first renders compile the templates
            print(f"{name}: {args.models} models, {KEEP} syncs, {args.rounds} rounds: p50 {statistics.median(times):.1f} ms, "
                  f"p95 {times[int(len(times) * 0.95) - 1]:.1f} ms, max {times[-1]:.1f} ms")


if __name__ == "__main__":
    main()
