"""A steady trickle of requests to one URL from a thread, every answer kept: the promotion
tests check that each was answered, and by which deployment (the model answers its version)."""

from __future__ import annotations

import threading

import httpx

from controlplane_support import ControlPlaneProcess


class Trickle:
    """`with Trickle(cp, f"/model-{id}/production/predict") as trickle: ...`, then
    `trickle.answers`: [(HTTP status or None for a connection error, version or error text)]."""

    def __init__(self, cp: ControlPlaneProcess, path: str, pause: float = 0.05):
        self._client = cp.client_for(cp.admin_key)
        self._path = path
        self._pause = pause
        self._stop = threading.Event()
        self.answers: list[tuple[int | None, str]] = []
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                response = self._client.post(self._path, json={})
                body = response.json().get("version", response.text) if response.status_code == 200 else response.text
                self.answers.append((response.status_code, str(body)))
            except (httpx.HTTPError, ValueError) as exc:
                self.answers.append((None, repr(exc)))
            self._stop.wait(self._pause)

    def failures(self) -> list[tuple[int | None, str]]:
        return [a for a in self.answers if a[0] != 200]

    def __enter__(self) -> "Trickle":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=120)
