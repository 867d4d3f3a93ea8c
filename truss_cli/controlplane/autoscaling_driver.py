"""A published deployment's desired replica count, tick by tick (docs/autoscaling.md): a
rollout's override, else the autoscaler's decision (`autoscaler.decide`, pure) on the
gateway's load samples and the deployment's effective autoscaling settings.

It keeps the autoscaler's inputs and memory per deployment in memory: a control plane
restart only starts the scale-down delay again. The event loop's thread takes a load sample
per deployment (`sample`); the reconciler's tick reads the settings and writes the desired
count (`settings`, `desired`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Optional

from truss_cli.controlplane import autoscaler
from truss_cli.controlplane.autoscaling_settings import AutoscalingSettings, effective
from truss_cli.controlplane.builds import build_log_path
from truss_cli.controlplane.runtimes.logfile import LogFile
from truss_cli.controlplane.store import Deployment, Store, states

logger = logging.getLogger("truss.controlplane.reconciler")  # the reconciler's decisions: its log, as before

_MAX_SAMPLES = 8000  # per deployment: an hour's window (the longest) of samples at 0.5 s


class AutoscalingDriver:
    def __init__(self, store: Store, load: Optional[Callable[[], Mapping[str, float]]],
                 rollout_replicas: Callable[[str], Optional[int]], scale_down_step_seconds: float) -> None:
        """`load`: the gateway's mean requests in flight or waiting per deployment since the
        last call (the loop's thread); `rollout_replicas(id)`: a rollout's replica count for a
        deployment it drives, None to leave it to the autoscaler."""
        self.store = store
        self._load = load
        self.rollout_replicas = rollout_replicas
        self.scale_down_step_seconds = scale_down_step_seconds
        self._samples: dict[str, deque[autoscaler.Sample]] = {}
        self._samples_lock = threading.Lock()
        self._scaling: dict[str, autoscaler.Memory] = {}
        self._bad_settings: set[str] = set()  # deployments whose stored settings were reported unreadable

    def sample(self, live: set[str]) -> None:
        """One load sample per deployment the last tick saw (`live`), from the gateway (the
        loop's thread)."""
        if self._load is None:
            return
        now = time.monotonic()
        averages = self._load()
        with self._samples_lock:
            for deployment_id in live | set(averages):
                samples = self._samples.get(deployment_id)
                if samples is None:
                    samples = self._samples[deployment_id] = deque(maxlen=_MAX_SAMPLES)
                samples.append(autoscaler.Sample(now, averages.get(deployment_id, 0.0)))

    def settings(self, deployment: Deployment, inputs: Mapping[str, tuple]) -> AutoscalingSettings:
        own, environment = inputs.get(deployment.id, (None, None))
        try:
            return effective(own, environment)
        except ValueError as exc:  # stored by an older or newer version: run on the defaults, say so once
            if deployment.id not in self._bad_settings:
                self._bad_settings.add(deployment.id)
                logger.warning("deployment %s: unreadable autoscaling settings (%s); using the defaults",
                               deployment.id, exc)
            return AutoscalingSettings()

    def desired(self, deployment: Deployment, settings: AutoscalingSettings, now: float) -> Deployment:
        """The desired count: a rollout's, else the autoscaler's (ACTIVE deployments only: one
        coming up or waking is not judged on the load it could not serve yet)."""
        override = self.rollout_replicas(deployment.id)
        if override is not None:
            self._scaling.pop(deployment.id, None)
            desired, why = max(0, override), "a rollout"
        elif deployment.status != states.ACTIVE:
            self._scaling.pop(deployment.id, None)  # the scale-down delay counts from ACTIVE
            return deployment
        elif deployment.desired_replicas == 0:
            # Never the autoscaler's doing (it scales an ACTIVE deployment to zero in the tick
            # that decides it): someone asked for zero now (a promotion's SCALE_TO_ZERO cleanup).
            self._scaling.pop(deployment.id, None)
            return deployment
        else:
            with self._samples_lock:
                samples = self._samples.get(deployment.id, ())
                start = now - settings.autoscaling_window
                # Keep the last sample before the window: it marks where the first one inside began.
                while len(samples) > 1 and samples[1].at <= start:
                    samples.popleft()
                samples = list(samples)
            decision = autoscaler.decide(settings, samples, deployment.desired_replicas, now,
                                         self._scaling.get(deployment.id, autoscaler.Memory()),
                                         self.scale_down_step_seconds)
            self._scaling[deployment.id] = decision.memory
            desired = decision.desired
            why = (f"{decision.load:.2f} requests in flight over {settings.autoscaling_window} s, "
                   f"concurrency_target {settings.concurrency_target} at {settings.target_utilization_percentage}%, "
                   f"replicas {settings.min_replica}..{settings.max_replica}")
        if desired == deployment.desired_replicas:
            return deployment
        with LogFile(build_log_path(self.store, deployment.id)) as log:
            log(f"autoscaling: {deployment.desired_replicas} -> {desired} replica(s) ({why})")
        return self.store.deployments.set_desired(deployment.id, replicas=desired)

    def woke(self, deployment_id: str) -> None:
        """It woke from zero: the scale-down delay starts again."""
        self._scaling.pop(deployment_id, None)

    def forget_except(self, live: set[str]) -> None:
        """Drop what is kept for deleted deployments."""
        for deployment_id in set(self._scaling) - live:
            self._scaling.pop(deployment_id, None)
        with self._samples_lock:
            for deployment_id in set(self._samples) - live:
                self._samples.pop(deployment_id, None)
