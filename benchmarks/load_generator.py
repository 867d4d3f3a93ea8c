#!/usr/bin/env python3
"""A steady, bounded load from a process of its own: `--rate` predicts per second, sent on a
fixed schedule whether or not earlier ones have answered (an open loop: a slow answer does
not slow the load down, as it would not with real users), for `--duration` seconds or until
`--stop-file` exists.

    python benchmarks/load_generator.py --url URL --key KEY --path /model-ID/production/predict \
        --rate 40 --duration 60 --out results.jsonl [--stop-file F] [--body '{}']

Each answered or failed request is one JSON line in `--out`, written as it completes:
`{"sent": epoch seconds at send, "status": HTTP status or null, "latency": seconds,
"version": the answer's "version" field or null, "error": what went wrong or null}`.
`--out` is complete once the process exits (every request sent is waited for, within
`--timeout`). A request is *failed* when its status is not 2xx or it got no answer at all.

Used by tests/test_controlplane_rollout_load.py and benchmarks/rollout.py; standard library
and httpx only, so it runs with the interpreter that runs them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from typing import IO, Any, Optional

import httpx


def failed(result: dict[str, Any]) -> bool:
    """Non-2xx or no answer: what a user of the endpoint would count as a failure."""
    status = result.get("status")
    return status is None or not 200 <= status < 300


def read_results(path: str) -> list[dict[str, Any]]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


async def _one(client: httpx.AsyncClient, path: str, body: Any, out: IO[str]) -> None:
    sent = time.time()
    started = time.perf_counter()
    result: dict[str, Any] = {"sent": sent, "status": None, "latency": None, "version": None, "error": None}
    try:
        response = await client.post(path, json=body)
        result["status"] = response.status_code
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if isinstance(answer, dict):
            result["version"] = answer.get("version")
        if not 200 <= response.status_code < 300:
            result["error"] = response.text[:300]
    except httpx.HTTPError as exc:
        result["error"] = f"{type(exc).__name__}: {exc}"[:300]
    result["latency"] = time.perf_counter() - started
    out.write(json.dumps(result) + "\n")
    out.flush()


async def run(url: str, key: Optional[str], path: str, rate: float, duration: float, out: IO[str],
              stop_file: Optional[str] = None, body: Any = None, timeout: float = 120.0) -> int:
    """Send for `duration` s (or until `stop_file` exists); -> the number of requests sent."""
    headers = {"Authorization": f"Api-Key {key}"} if key else {}
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=64)
    interval = 1.0 / rate
    tasks: set[asyncio.Task[None]] = set()
    sent = 0
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=timeout, limits=limits) as client:
        start = time.monotonic()
        while True:
            now = time.monotonic()
            if now - start >= duration or (stop_file and os.path.exists(stop_file)):
                break
            task = asyncio.create_task(_one(client, path, {} if body is None else body, out))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            sent += 1
            # The schedule, not the previous send, sets the next one: no drift, no catch-up burst.
            next_at = start + sent * interval
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        if tasks:
            await asyncio.gather(*tasks)
    return sent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True, help="the control plane's base URL")
    parser.add_argument("--key", help="an API key (sent as Authorization: Api-Key KEY)")
    parser.add_argument("--path", required=True, help="e.g. /model-ID/production/predict")
    parser.add_argument("--rate", type=float, default=40.0, help="requests per second")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds (an upper bound with --stop-file)")
    parser.add_argument("--out", required=True, help="JSON lines, one per request")
    parser.add_argument("--stop-file", help="stop sending once this file exists")
    parser.add_argument("--body", default="{}", help="the JSON body of every request")
    parser.add_argument("--timeout", type=float, default=120.0, help="per request, seconds")
    args = parser.parse_args()
    if args.rate <= 0:
        parser.error("--rate must be above 0")
    with open(args.out, "w") as out:
        sent = asyncio.run(run(args.url, args.key, args.path, args.rate, args.duration, out, args.stop_file,
                               json.loads(args.body), args.timeout))
    print(json.dumps({"sent": sent}))


if __name__ == "__main__":
    main()
