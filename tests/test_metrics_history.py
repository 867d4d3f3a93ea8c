"""The gateway's in-memory hour of metrics (gateway/metrics_history.py), on an injected clock."""

from __future__ import annotations

import math
import random

import pytest

from truss_cli.controlplane.gateway.metrics import GatewayMetrics
from truss_cli.controlplane.gateway.metrics_history import GROWTH, MetricsHistory, percentile

T0 = 1_800_000_000.0  # a bucket boundary (divisible by 10)
M, D1, D2 = "m1", "d1", "d2"


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def history(clock: Clock) -> MetricsHistory:
    return MetricsHistory(clock)


def test_requests_fall_into_ten_second_buckets_that_roll_with_the_clock(history, clock):
    for _ in range(5):
        history.observe((M, D1), 200, 0.010)
    clock.now += 10  # the next bucket
    for _ in range(3):
        history.observe((M, D1), 200, 0.010)
    clock.now += 5
    window = history.window(M, D1, [D1], minutes=1)
    assert window.step_seconds == 10 and len(window.time) == 6
    assert window.time[-1] == T0 + 10 and window.time[0] == window.start == T0 - 40
    assert window.requests[-2:] == [5, 3]
    # A finished bucket is 10 s long; the one in progress as long as it has run (5 s).
    assert window.requests_per_second[-2:] == [0.5, 0.6]
    assert len({len(s) for s in (window.time, window.requests_per_second, window.error_rate, window.p50_ms,
                                  window.p95_ms, window.replicas)}) == 1


def test_the_ring_wraps_an_hour_later_and_forgets_what_is_older(history, clock):
    history.observe((M, D1), 200, 0.010)
    clock.now += 3600  # the same slot of the ring, an hour later
    history.observe((M, D1), 200, 0.010)
    history.observe((M, D1), 200, 0.010)
    window = history.window(M, D1, [D1])
    assert len(window.time) == 360
    assert sum(n for n in window.requests if n) == 2, "the bucket of an hour ago was reused, not added to"
    clock.now += 3600 + 10
    assert sum(n for n in history.window(M, D1, [D1]).requests if n) == 0


def test_percentiles_of_known_latencies_are_within_the_histograms_stated_error(history):
    rng = random.Random(7)
    latencies_ms = [rng.lognormvariate(math.log(20), 0.8) for _ in range(2000)]
    for ms in latencies_ms:
        history.observe((M, D1), 200, ms / 1000)
    window = history.window(M, D1, [D1], minutes=1)
    ordered = sorted(latencies_ms)
    for q, got in ((0.50, window.p50_ms[-1]), (0.95, window.p95_ms[-1])):
        exact = ordered[math.ceil(q * len(ordered)) - 1]  # nearest rank
        assert abs(got - exact) / exact <= math.sqrt(GROWTH) - 1 + 1e-9, (q, got, exact)


def test_percentile_on_a_handful_of_requests():
    history = MetricsHistory(Clock())
    for ms in (1, 2, 3, 4, 100):
        history.observe((M, D1), 200, ms / 1000)
    window = history.window(M, D1, [D1], minutes=1)
    assert window.p50_ms[-1] == pytest.approx(3, rel=0.025)
    assert window.p95_ms[-1] == pytest.approx(100, rel=0.025)
    assert percentile({}, 0.5) is None


def test_error_rate_counts_5xx_and_broken_responses_and_is_null_without_requests(history, clock):
    for status in (200, 200, 500, 503, 404, 200, 200, 200, 200, 200):
        history.observe((M, D1), status, 0.001)
    history.broken_response((M, D1))  # a 200 whose body the replica broke off
    window = history.window(M, D1, [D1], minutes=1)
    assert window.requests[-1] == 10 and window.errors[-1] == 3
    assert window.error_rate[-1] == 0.3
    assert window.error_rate[0] is None and window.p50_ms[0] is None and window.p95_ms[0] is None


def test_the_model_total_sums_its_deployments_and_a_deployment_is_its_own(history, clock):
    history.replicas_changed(D1, 1)
    history.replicas_changed(D2, 2)
    history.observe((M, D1), 200, 0.001)
    history.observe((M, D2), 200, 0.001)
    history.observe((M, D2), 500, 0.001)
    history.observe((M, ""), 503, 0.001)  # refused before a deployment was chosen: the model's only
    history.observe(("other", D1), 200, 0.001)
    total = history.window(M, None, [D1, D2], minutes=1)
    assert total.requests[-1] == 4 and total.errors[-1] == 2 and total.replicas[-1] == 3
    one = history.window(M, D2, [D2], minutes=1)
    assert one.requests[-1] == 2 and one.errors[-1] == 1 and one.replicas[-1] == 2


def test_replicas_per_bucket_are_the_highest_ready_count_during_it(history, clock):
    history.replicas_changed(D1, 1)
    clock.now += 12
    history.replicas_changed(D1, 3)  # bucket 1: 1 then 3
    clock.now += 2
    history.replicas_changed(D1, 2)
    clock.now += 20  # bucket 3, in progress
    window = history.window(M, D1, [D1], minutes=1)
    assert window.replicas[-4:] == [1, 3, 2, 2]
    assert history.window(M, None, ["never-reported"], minutes=1).replicas[-1] == 0


def test_before_the_history_began_the_figures_are_unknown_not_zero(clock):
    clock.now = T0 + 25  # the control plane started 25 s into the window's last minute
    history = MetricsHistory(clock)
    clock.now += 10
    window = history.window(M, D1, [D1], minutes=1)
    assert window.kept_since == T0 + 25
    known = [t >= T0 + 20 for t in window.time]
    assert [r is not None for r in window.requests] == known
    assert [r is not None for r in window.replicas] == known


def test_an_idle_deployment_costs_nothing(history, clock):
    history.replicas_changed(D1, 1)
    rings_before = len(history._rings)
    clock.now += 3600  # an hour of nothing: no timer ran, no bucket was made
    assert len(history._rings) == rings_before == 0
    window = history.window(M, D1, [D1])
    assert set(window.requests) == {0} and set(window.replicas) == {1}


def test_a_deployment_idle_for_an_hour_gives_its_memory_back(history, clock):
    for _ in range(3):
        history.observe((M, D1), 200, 0.001)
    history.window(M, D1, [D1])
    clock.now += 10
    history.window(M, D1, [D1])  # keeps the finished bucket's summary
    assert (M, D1) in history._rings and history._summaries
    clock.now += 3600
    history.observe((M, D2), 200, 0.001)  # any request runs the sweep (at most every 10 minutes)
    assert set(history._rings) == {(M, D2)}
    assert not history._summaries
    assert sum(history.window(M, D1, [D1]).requests) == 0


def test_the_gateway_metrics_feed_the_history_but_not_with_refusals_of_unknown_models(clock):
    metrics = GatewayMetrics(MetricsHistory(clock))
    metrics.observe((M, D1), 200, 0.002)
    metrics.observe(("no-such-model", ""), 404, 0.001)  # a URL's model id: any text
    metrics.observe(("x", ""), 401, 0.001)
    metrics.observe((M, ""), 503, 0.001)  # no replica ready
    metrics.error((M, D1), "connect")  # retried elsewhere or answered 503: counted by its status
    metrics.error((M, D1), "upstream_mid_response")
    assert set(metrics.history._rings) == {(M, D1), (M, "")}
    window = metrics.history.window(M, None, [D1], minutes=1)
    assert window.requests[-1] == 2 and window.errors[-1] == 2


def test_a_bucket_read_while_in_progress_is_read_again_once_finished(history, clock):
    history.observe((M, D1), 200, 0.001)
    assert history.window(M, None, [D1], minutes=1).requests[-1] == 1  # in progress
    history.observe((M, D1), 500, 0.001)
    clock.now += 10
    finished = history.window(M, None, [D1], minutes=1)
    assert finished.requests[-2:] == [2, 0] and finished.errors[-2] == 1
    assert history.window(M, None, [D1], minutes=1).requests[-2:] == [2, 0]  # kept, the same
