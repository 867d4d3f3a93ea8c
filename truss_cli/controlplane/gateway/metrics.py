"""Prometheus metrics of the gateway, per model and deployment, in the text exposition format.

Plain dicts updated on the event loop thread (no locks, no registry): a request costs a few
dict operations. The control plane serves `render()` at /metrics. Requests refused before a
deployment was chosen (401, 404, 413, 503) carry deployment="".

`history` keeps the last hour of the same requests in 10 s buckets for the dashboard's charts
(metrics_history.py): those a deployment answered, and the model's 5xx answered before one was
chosen (a 401 or 404 says nothing about a model's health, and its model id may be any text).
"""

from __future__ import annotations

import bisect
from collections import defaultdict

from truss_cli.controlplane.gateway.metrics_history import MetricsHistory
from truss_cli.server.metrics import LATENCY_BUCKETS, histogram_lines

Key = tuple[str, str]  # (model_id, deployment_id)

_STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")


class GatewayMetrics:
    def __init__(self, history: MetricsHistory | None = None) -> None:
        self.requests: defaultdict[tuple[str, str, str], int] = defaultdict(int)
        self.errors: defaultdict[tuple[str, str, str], int] = defaultdict(int)
        self.in_flight: defaultdict[Key, int] = defaultdict(int)
        # Requests waiting for a target to wake or scale up: what an autoscaler reads.
        self.parked: defaultdict[str, int] = defaultdict(int)
        self._buckets: dict[Key, list[int]] = {}
        self._sums: defaultdict[Key, float] = defaultdict(float)
        self.history = history or MetricsHistory()

    def observe(self, key: Key, status: int, seconds: float) -> None:
        index = status // 100 - 1
        status_class = _STATUS_CLASSES[index] if 0 <= index < 5 else "5xx"
        self.requests[(key[0], key[1], status_class)] += 1
        counts = self._buckets.get(key)
        if counts is None:
            counts = self._buckets[key] = [0] * (len(LATENCY_BUCKETS) + 1)
        counts[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self._sums[key] += seconds
        if key[1] or status >= 500:
            self.history.observe(key, status, seconds)

    def error(self, key: Key, kind: str) -> None:
        """A failure of the gateway or of the way to a replica (not a replica's own 5xx)."""
        self.errors[(key[0], key[1], kind)] += 1
        if kind == "upstream_mid_response":
            # The others end in a 502/503 that observe() counts, or in a retry that succeeded.
            self.history.broken_response(key)

    def render(self) -> str:
        lines = [
            "# HELP truss_gateway_requests_total Inference requests answered, by status class.",
            "# TYPE truss_gateway_requests_total counter",
        ]
        for (model, deployment, status_class), count in sorted(self.requests.items()):
            lines.append(f'truss_gateway_requests_total{{{_labels(model, deployment)},code="{status_class}"}} {count}')
        lines += [
            "# HELP truss_gateway_errors_total Requests the gateway could not take to a replica, or lost on the way.",
            "# TYPE truss_gateway_errors_total counter",
        ]
        for (model, deployment, kind), count in sorted(self.errors.items()):
            lines.append(f'truss_gateway_errors_total{{{_labels(model, deployment)},kind="{kind}"}} {count}')
        lines += [
            "# HELP truss_gateway_request_duration_seconds From the request to the end of the response.",
            "# TYPE truss_gateway_request_duration_seconds histogram",
        ]
        for key, counts in sorted(self._buckets.items()):
            lines += histogram_lines("truss_gateway_request_duration_seconds", _labels(*key), counts, self._sums[key])
        lines += [
            "# HELP truss_gateway_requests_in_flight Requests on their way through the gateway now.",
            "# TYPE truss_gateway_requests_in_flight gauge",
        ]
        for key, count in sorted(self.in_flight.items()):
            lines.append(f"truss_gateway_requests_in_flight{{{_labels(*key)}}} {count}")
        lines += [
            "# HELP truss_gateway_requests_parked Requests waiting for a replica of a starting target, by model.",
            "# TYPE truss_gateway_requests_parked gauge",
        ]
        for model, count in sorted(self.parked.items()):
            lines.append(f'truss_gateway_requests_parked{{model="{_escape(model)}"}} {count}')
        return "\n".join(lines) + "\n"


def _labels(model: str, deployment: str) -> str:
    return f'model="{_escape(model)}",deployment="{_escape(deployment)}"'


def _escape(value: str) -> str:
    # Ids come from URLs: a quote or backslash must not break the exposition format.
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
