"""The autoscaler's pure decision (controlplane/autoscaler.py), rule by rule, in tables."""

from __future__ import annotations

import pytest

from truss_cli.controlplane.autoscaler import Memory, Sample, average_load, decide, wanted_replicas
from truss_cli.controlplane.autoscaling_settings import AutoscalingSettings


def settings(**changes: int) -> AutoscalingSettings:
    base = dict(min_replica=0, max_replica=10, autoscaling_window=10, scale_down_delay=30, concurrency_target=1,
                target_utilization_percentage=100, max_scale_down_rate=50)
    return AutoscalingSettings(**{**base, **changes})


def steady(load: float, until: float, start: float = 0.0, every: float = 1.0) -> list[Sample]:
    samples, at = [], start
    while at <= until:
        samples.append(Sample(at, load))
        at += every
    return samples


@pytest.mark.parametrize("load, changes, wanted", [
    (0.0, {}, 0),                                                     # no load, min 0: zero
    (0.0, {"min_replica": 2}, 2),                                     # min is a floor
    (0.4, {}, 1),                                                     # any load wants a replica
    (1.0, {}, 1),
    (1.01, {}, 2),                                                    # ceil
    (3.0, {"concurrency_target": 2}, 2),                              # 3 in flight / 2 per replica
    (1.4, {"target_utilization_percentage": 70}, 2),                  # 1.4 / 0.7 = 2 exactly, not 3
    (1.5, {"target_utilization_percentage": 70}, 3),
    (7.0, {"concurrency_target": 5, "target_utilization_percentage": 70}, 2),  # 7 / 3.5
    (100.0, {"max_replica": 4}, 4),                                   # max is a ceiling
])
def test_wanted_replicas_is_load_over_target_concurrency_within_bounds(load: float, changes: dict, wanted: int) -> None:
    assert wanted_replicas(settings(**changes), load) == wanted


@pytest.mark.parametrize("samples, window, now, load", [
    ([], 10, 100.0, 0.0),                                             # nothing seen: no load
    ([Sample(95, 2), Sample(99, 4)], 10, 100.0, 3.0),                 # first held as long as the next: 4 s each
    ([Sample(80, 50), Sample(95, 2), Sample(99, 4)], 10, 100.0, 26 / 9),  # 95 clipped to the window: 2 for 5 s, 4 for 4 s
    ([Sample(80, 50)], 10, 100.0, 0.0),                               # older than the window: left out
    ([Sample(99, 7)], 10, 100.0, 7.0),                                # alone: the load
    # time-weighted: 10 in flight for 1 s, then 2 for 8 s -> 26 / 9, not the samples' mean 6
    ([Sample(90, 0), Sample(91, 10), Sample(99, 2)], 10, 100.0, 26 / 9),
    # a burst of close samples (the reconciler samples faster while requests wait on a wake)
    # weighs what it lasted: 4 for 8 s, then 0 over 4 samples in 1 s -> 32 / 9, not 4 / 5
    ([Sample(90, 4), Sample(98, 4), Sample(98.25, 0), Sample(98.5, 0), Sample(98.75, 0), Sample(99, 0)],
     10, 100.0, 32 / 9),
    ([Sample(95, 2), Sample(95, 4)], 10, 100.0, 3.0),                 # all at one instant: their mean
])
def test_the_load_is_the_time_weighted_mean_of_the_window(samples: list, window: int, now: float,
                                                          load: float) -> None:
    assert average_load(samples, window, now) == pytest.approx(load)


def test_load_above_the_current_count_scales_up_at_once_past_any_delay() -> None:
    decision = decide(settings(scale_down_delay=3600), steady(3.0, 10), current=1, now=10.0)
    assert (decision.desired, decision.wanted, decision.load) == (3, 3, 3.0)


@pytest.mark.parametrize("current, changes, desired", [
    (0, {"min_replica": 2}, 2),   # below min: up to min at once (min raised by a PATCH)
    (6, {"max_replica": 3}, 3),   # above max: down to max at once (max lowered), no delay
    (2, {}, 2),                   # within bounds, load matching: unchanged
])
def test_a_count_outside_the_bounds_moves_into_them_at_once(current: int, changes: dict, desired: int) -> None:
    assert decide(settings(scale_down_delay=3600, **changes), steady(2.0, 10), current, now=10.0).desired == desired


def run(cfg: AutoscalingSettings, loads: list[tuple[float, float]], current: int, until: float,
        tick: float = 1.0) -> list[tuple[float, int]]:
    """Drive `decide` every `tick` seconds from 0 to `until`, the load following `loads`
    ((from time, in flight) steps), feeding each desired count back as the current one.
    -> [(time, desired)] at every change."""
    memory, samples, changes, now = Memory(), [], [], 0.0
    while now <= until:
        load = [value for start, value in loads if start <= now][-1]
        samples.append(Sample(now, load))
        decision = decide(cfg, samples, current, now, memory)
        memory = decision.memory
        if decision.desired != current:
            changes.append((now, decision.desired))
            current = decision.desired
        now += tick
    return changes


def test_scale_down_waits_for_the_delay_then_steps_at_the_rate() -> None:
    # 8 in flight for 20 s, then nothing. Window 10 s, delay 30 s, 50% per step, steps 2 s apart.
    cfg = settings(autoscaling_window=10, scale_down_delay=30)
    changes = run(cfg, [(0, 8.0), (20, 0.0)], current=8, until=120)
    # The window's mean drops to 0 at t=30 (last loaded sample at t=19 leaves it after t=29);
    # wanted fell below 8 from t=21 on, so the highest wanted of the last 30 s is below 8 from
    # t=51 on (wanted 8 last seen at t=20). Then 8 -> 4 -> 2 -> 1 -> 0, 2 s apart, each at
    # most half, and never below the highest wanted of the last 30 s.
    times = [t for t, _ in changes]
    assert changes[0][0] == 51 and changes[-1][1] == 0, changes
    assert all(b - a >= 2 for a, b in zip(times, times[1:])), changes
    counts = [8] + [d for _, d in changes]
    assert all(after >= before - max(1, before // 2) for before, after in zip(counts, counts[1:])), changes


def test_load_within_the_delay_holds_the_replicas() -> None:
    # 4 in flight for 10 s, quiet for 30 s, 4 again for 10 s (t=40..49), then quiet: the
    # replicas the second burst needed stay until 30 s after it (wanted 4 last at t=49).
    cfg = settings(autoscaling_window=10, scale_down_delay=30)
    changes = run(cfg, [(0, 4.0), (10, 0.0), (40, 4.0), (50, 0.0)], current=4, until=200)
    assert [d for t, d in changes if 40 <= t <= 49][-1] == 4, changes  # back up during the burst
    after_burst = [(t, d) for t, d in changes if t > 49]
    assert after_burst[0][0] >= 49 + 30 and after_burst[-1][1] == 0, changes


def test_a_control_plane_that_just_started_does_not_scale_down_before_the_delay() -> None:
    # No samples at all (nobody called it) while 3 replicas run: it watches for the delay first.
    cfg = settings(scale_down_delay=30)
    assert decide(cfg, [], current=3, now=1000.0).desired == 3
    memory = decide(cfg, [], current=3, now=1000.0).memory
    assert decide(cfg, [], current=3, now=1029.0, memory=memory).desired == 3
    assert decide(cfg, [], current=3, now=1030.0, memory=memory).desired == 2  # 50% of 3, rounded down, at least 1


@pytest.mark.parametrize("rate, current, after_one_step", [
    (50, 8, 4), (50, 3, 2), (50, 1, 0), (25, 8, 6), (10, 8, 7), (1, 100, 99), (20, 4, 3),
])
def test_max_scale_down_rate_bounds_one_step(rate: int, current: int, after_one_step: int) -> None:
    cfg = settings(scale_down_delay=0, max_replica=100, max_scale_down_rate=rate)
    assert decide(cfg, [], current, now=5.0).desired == after_one_step


def test_a_zero_delay_and_min_zero_reach_zero_in_steps() -> None:
    changes = run(settings(scale_down_delay=0), [(0, 0.0)], current=4, until=20)
    assert [d for _, d in changes] == [2, 1, 0]


def test_min_replica_stops_the_scale_down() -> None:
    changes = run(settings(scale_down_delay=0, min_replica=2), [(0, 0.0)], current=6, until=20)
    assert [d for _, d in changes] == [3, 2]


def test_scale_down_stops_at_what_the_remaining_load_needs() -> None:
    changes = run(settings(scale_down_delay=0, autoscaling_window=10), [(0, 2.0)], current=8, until=30)
    assert [d for _, d in changes] == [4, 2]
