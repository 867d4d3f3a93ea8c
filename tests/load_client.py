"""A second process that loads a control plane: `python tests/load_client.py URL KEY PATH
THREADS STOP_FILE OUT_FILE`. THREADS threads each send predicts one after the other until
STOP_FILE exists, then every answer (status, replica id, error code) goes to OUT_FILE as JSON.
The autoscaling tests run it so the load comes from outside the test's own process."""

from __future__ import annotations

import json
import os
import sys
import threading

import httpx


def main() -> None:
    url, key, path, threads, stop_file, out_file = sys.argv[1:7]
    results: list[dict] = []
    lock = threading.Lock()

    def run() -> None:
        with httpx.Client(base_url=url, headers={"Authorization": f"Api-Key {key}"}, timeout=300) as client:
            while not os.path.exists(stop_file):
                try:
                    response = client.post(path, json={"sleep": 0.2})
                    result = {"status": response.status_code, "replica": response.headers.get("x-truss-replica-id")}
                    if response.status_code != 200:
                        result["body"] = response.text[:300]
                except httpx.HTTPError as exc:
                    result = {"status": None, "body": repr(exc)}
                with lock:
                    results.append(result)

    workers = [threading.Thread(target=run) for _ in range(int(threads))]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    with open(out_file + ".tmp", "w") as f:
        json.dump(results, f)
    os.replace(out_file + ".tmp", out_file)


if __name__ == "__main__":
    main()
