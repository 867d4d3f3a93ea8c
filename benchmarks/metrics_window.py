#!/usr/bin/env python3
"""What a read of the metrics history costs: `GET /v1/models/{id}/metrics` computes its window
on the event loop's thread (the gateway's thread), so it must stay short.

    python benchmarks/metrics_window.py [--deployments 5] [--latencies 40] [--rounds 50]

A MetricsHistory with a full hour of traffic (every 10 s bucket of every deployment holding
requests spread over `--latencies` distinct latency bins, which is what a few hundred
requests of a real model give), then the model's window (every deployment merged) and one
deployment's, timed: the first read (every bucket summarised) and the refreshes after it
(10 s later each: the finished buckets' summaries are kept); also the memory the hour takes
(tracemalloc) and the cost of one `observe` (the per-request path).
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
import timeit
import tracemalloc

from truss_cli.controlplane.gateway.metrics_history import SLOTS, STEP_SECONDS, MetricsHistory


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def filled(deployments: int, latencies: int) -> tuple[MetricsHistory, Clock]:
    rng = random.Random(1)
    clock = Clock(1_800_000_000.0 - SLOTS * STEP_SECONDS)
    history = MetricsHistory(clock)
    for slot in range(SLOTS):
        for d in range(deployments):
            history.replicas_changed(f"d{d}", 1 + slot % 3)
            for _ in range(latencies * 3):
                history.observe(("m", f"d{d}"), 500 if rng.random() < 0.01 else 200,
                                rng.lognormvariate(-4.5, 1.0))
        clock.now += STEP_SECONDS
    return history, clock


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deployments", type=int, default=5)
    parser.add_argument("--latencies", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=50)
    args = parser.parse_args()
    tracemalloc.start()
    history, clock = filled(args.deployments, args.latencies)
    memory = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    bins = statistics.mean(len(b.latency) for ring in history._rings.values() for b in ring if b)
    ids = [f"d{d}" for d in range(args.deployments)]
    for label, view, replicas in (("model (all deployments)", None, ids), ("one deployment", "d0", ["d0"])):
        started = time.perf_counter()
        history.window("m", view, replicas)
        cold = (time.perf_counter() - started) * 1000
        times = []
        for _ in range(args.rounds):  # the page's refresh: 10 s later, one more finished bucket
            clock.now += STEP_SECONDS
            started = time.perf_counter()
            history.window("m", view, replicas)
            times.append((time.perf_counter() - started) * 1000)
        times.sort()
        print(f"window, {label}: first read {cold:.1f} ms; refreshes p50 {statistics.median(times):.2f} ms, "
              f"p95 {times[int(len(times) * 0.95) - 1]:.2f} ms")
    print(f"memory: {memory / 1e6:.2f} MB for {args.deployments} deployments x an hour "
          f"({memory / args.deployments / 1e3:.0f} kB each; {bins:.0f} latency bins per bucket on average)")
    n = 200_000
    best = min(timeit.repeat(lambda: history.observe(("m", "d0"), 200, 0.0042), number=n, repeat=5))
    print(f"observe (per request): {best / n * 1e9:.0f} ns")


if __name__ == "__main__":
    main()
