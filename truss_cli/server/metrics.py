"""Prometheus metrics for the model server, in the text exposition format.

A few counters updated on the event loop thread only (so no locks), rendered on scrape.
prometheus_client would add a dependency and a registry for four numbers.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from typing import Callable

# Seconds. Fine resolution at the low end, where the server's own overhead shows.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Metrics:
    def __init__(self, is_ready: Callable[[], bool] = lambda: False) -> None:
        self.requests: defaultdict[tuple[str, int], int] = defaultdict(int)
        self.in_flight: defaultdict[str, int] = defaultdict(int)
        self._bucket_counts: dict[str, list[int]] = {}
        self._sums: defaultdict[str, float] = defaultdict(float)
        self._is_ready = is_ready

    def observe(self, route: str, status: int, seconds: float) -> None:
        self.requests[(route, status)] += 1
        counts = self._bucket_counts.get(route)
        if counts is None:
            counts = self._bucket_counts[route] = [0] * (len(LATENCY_BUCKETS) + 1)
        counts[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self._sums[route] += seconds

    def render(self) -> str:
        lines = [
            "# HELP truss_requests_total HTTP requests answered, by route and status code.",
            "# TYPE truss_requests_total counter",
        ]
        for (route, status), count in sorted(self.requests.items()):
            lines.append(f'truss_requests_total{{route="{route}",status="{status}"}} {count}')
        lines += [
            "# HELP truss_request_duration_seconds Time from request to the end of the response.",
            "# TYPE truss_request_duration_seconds histogram",
        ]
        for route, counts in sorted(self._bucket_counts.items()):
            lines += histogram_lines("truss_request_duration_seconds", f'route="{route}"', counts, self._sums[route])
        lines += [
            "# HELP truss_requests_in_flight Requests being handled now, by route.",
            "# TYPE truss_requests_in_flight gauge",
        ]
        for route, count in sorted(self.in_flight.items()):
            lines.append(f'truss_requests_in_flight{{route="{route}"}} {count}')
        lines += [
            "# HELP truss_model_ready 1 once load() has finished successfully.",
            "# TYPE truss_model_ready gauge",
            f"truss_model_ready {1 if self._is_ready() else 0}",
        ]
        return "\n".join(lines) + "\n"


def histogram_lines(name: str, labels: str, counts: list[int], total: float) -> list[str]:
    """One latency histogram in Prometheus text: cumulative `_bucket` lines over
    LATENCY_BUCKETS (then +Inf), `_sum` and `_count`. `counts` has one entry per bucket plus
    one for +Inf; `labels` is the rendered label list (`route="predict"`). Also used by the
    control plane's gateway, so both expose latency the same way."""
    lines = []
    cumulative = 0
    for bound, count in zip(LATENCY_BUCKETS + (float("inf"),), counts):
        cumulative += count
        le = "+Inf" if bound == float("inf") else repr(bound)
        lines.append(f'{name}_bucket{{{labels},le="{le}"}} {cumulative}')
    lines.append(f"{name}_sum{{{labels}}} {total!r}")
    lines.append(f"{name}_count{{{labels}}} {cumulative}")
    return lines
