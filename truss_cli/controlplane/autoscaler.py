"""The autoscaler: how many replicas a published deployment wants now (issue 11, contract S3).

Pure: settings + samples of its load + its current count + the clock + what it remembered
last time -> the desired count + what to remember. No I/O, no clock of its own, so every
rule is tested with tables (tests/test_autoscaler.py); the reconciler calls it each tick.

The rules (Baseten's autoscaling_settings):
- load = the deployment's requests in flight (at a replica or queued at the gateway),
  averaged over the last `autoscaling_window` seconds, each sample weighted by the time it
  covers;
- wanted = ceil(load / (concurrency_target x target_utilization_percentage / 100)),
  within [min_replica, max_replica];
- up at once: wanted above the current count is the desired count;
- down only after `scale_down_delay`: the count goes down to the highest `wanted` of the
  last `scale_down_delay` seconds (so one quiet moment does not remove a replica that the
  load of a minute ago needed), and only once the autoscaler has watched for that long
  (a control plane that just started knows nothing of the minutes before);
- at most `max_scale_down_rate` percent of the replicas (at least one) per step, one step
  every `step_seconds`, so a drop in load drains the replicas in stages.
A count outside the bounds (the settings just changed) moves into them at once.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Optional

from truss_cli.controlplane.autoscaling_settings import AutoscalingSettings

# Scale-down steps are this far apart at least (Knative's evaluation period is 2 s too).
SCALE_DOWN_STEP_SECONDS = 2.0


@dataclass(frozen=True)
class Sample:
    """`in_flight` requests of the deployment at monotonic time `at`: the average over the
    time since the previous sample (the window weighs it by that span)."""

    at: float
    in_flight: float


@dataclass(frozen=True)
class Memory:
    """What one decision hands the next. `since`: when the autoscaler started watching this
    deployment; `recent`: (time, wanted) of the last scale_down_delay seconds, kept as the
    decreasing run whose first entry is their maximum; `last_step_down`: when it last
    removed replicas."""

    since: Optional[float] = None
    recent: tuple[tuple[float, int], ...] = ()
    last_step_down: Optional[float] = None


@dataclass(frozen=True)
class Decision:
    desired: int
    memory: Memory
    load: float  # the averaged in-flight requests it decided on
    wanted: int  # what that load asks for now, within the bounds


def average_load(samples: Sequence[Sample], window_seconds: float, now: float) -> float:
    """The time-weighted mean load of the last `window_seconds` (0 with no sample in it).

    A sample is the load over the time since the one before it, so it weighs as long as that
    span lies inside the window: samples come at an uneven pace (faster while requests wait on
    a waking deployment), and a plain mean would let a burst of close samples outweigh a
    longer quiet span. A sample with none before it is taken to have held as long as the
    next one did (a steady pace), or alone to be the load."""
    start = now - window_seconds
    inside = [s.in_flight for s in samples if s.at > start]
    total = weight = 0.0
    for i, sample in enumerate(samples):
        if sample.at <= start:
            continue  # wholly before the window: it only bounds the span of the next one
        if i > 0:
            began = samples[i - 1].at
        elif len(samples) > 1:
            began = sample.at - (samples[1].at - sample.at)
        else:
            return sample.in_flight
        span = sample.at - max(began, start)
        total += sample.in_flight * span
        weight += span
    if weight > 0:
        return total / weight
    return sum(inside) / len(inside) if inside else 0.0  # samples all at one instant


def wanted_replicas(settings: AutoscalingSettings, load: float) -> int:
    per_replica = settings.concurrency_target * settings.target_utilization_percentage / 100
    # A float quotient such as 1.4 / 0.7 may land a hair above the integer it means.
    wanted = math.ceil(round(load / per_replica, 9)) if load > 0 else 0
    return min(max(wanted, settings.min_replica), settings.max_replica)


def decide(settings: AutoscalingSettings, samples: Sequence[Sample], current: int, now: float,
           memory: Memory = Memory(), step_seconds: float = SCALE_DOWN_STEP_SECONDS) -> Decision:
    """The desired replica count of a deployment running `current` (what it was last told)."""
    load = average_load(samples, settings.autoscaling_window, now)
    wanted = wanted_replicas(settings, load)
    since = memory.since if memory.since is not None else now
    recent = _remember(memory.recent, now, wanted, settings.scale_down_delay)
    memory = Memory(since, recent, memory.last_step_down)
    if current < settings.min_replica or wanted > current:
        return Decision(max(wanted, settings.min_replica), memory, load, wanted)
    if current > settings.max_replica:
        return Decision(settings.max_replica, memory, load, wanted)
    held = min(max(recent[0][1], settings.min_replica), settings.max_replica)
    watched_long_enough = now - since >= settings.scale_down_delay
    step_due = memory.last_step_down is None or now - memory.last_step_down >= step_seconds
    if held >= current or not watched_long_enough or not step_due:
        return Decision(current, memory, load, wanted)
    step = max(1, current * settings.max_scale_down_rate // 100)
    desired = max(held, current - step)
    return Decision(desired, Memory(since, recent, now), load, wanted)


def _remember(recent: tuple[tuple[float, int], ...], now: float, wanted: int,
              delay: float) -> tuple[tuple[float, int], ...]:
    """A sliding maximum: entries older than `delay` leave; a new value drops the smaller or
    equal ones before it (they can never be the maximum again)."""
    kept = [(at, w) for at, w in recent if at >= now - delay and w > wanted]
    return (*kept, (now, wanted))
