"""A real image registry for the tests: Debian's `docker-registry` (the CNCF distribution
registry) on a free loopback port, storing under a temporary directory, started from a config
file without systemd and stopped by the fixture that started it.

The engine speaks plain HTTP to loopback registries (127.0.0.0/8 is trusted by default), so
no TLS is needed. With `users`, the registry demands basic auth from an htpasswd file (bcrypt,
the only form it accepts, made with the C library's crypt).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import IN_CI

SETUP_HINT = "run `source .ci/registry-setup.sh` (installs Debian's docker-registry)"


@dataclass
class LocalRegistry:
    host: str  # 127.0.0.1:PORT, as an image reference names it
    root: Path
    process: subprocess.Popen
    log: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def forget_on_engine(self, client: Any) -> list[str]:
        """Remove from the engine what pushing to and pulling from this registry left there
        (its references and their local twins: `remove_references_to`), so a test module
        leaves no image tags behind whatever its tests did. -> what could not be removed."""
        return remove_references_to(client, self.host)


def remove_references_to(client: Any, host: str) -> list[str]:
    """Untag every image reference into registry `host` on the engine (`HOST/PREFIX/NAME:TAG`
    as a push tags it, `HOST/...@sha256:...` as a pull by digest names it) and, for each pushed
    tag, the build's local tag it was made from (`NAME:TAG`, the same image): the control
    plane's builds name an image `truss-MODEL:DEPLOYMENT_ID` and push it under that name. An
    image left with no reference is deleted (its layers shared with the base stay). Only
    these names: the same image may carry other tags (an identical build of another test or
    worktree), which stay. `client`: docker's APIClient. -> the references still there (a
    container still uses the image), for the caller to report."""
    import docker

    prefix = host + "/"
    references: list[str] = []
    for image in client.images():
        tags = image.get("RepoTags") or []
        ours = [tag for tag in tags if tag.startswith(prefix)]
        twins = [tag.rsplit("/", 1)[1] for tag in ours]
        references += [tag for tag in twins if tag in tags] + ours
        references += [digest for digest in image.get("RepoDigests") or [] if digest.startswith(prefix)]
    left = []
    for reference in references:
        try:
            client.remove_image(reference)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            left.append(f"{reference}: {exc.explanation or exc}")
    return left


def registry_binary() -> str:
    """The registry executable; skips without one, except in CI where that is a failure."""
    found = shutil.which("docker-registry") or shutil.which("registry")
    if found is None:
        message = f"no docker-registry binary on PATH; {SETUP_HINT}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return found


def free_loopback_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_registry(root: Path, users: dict[str, str] | None = None, timeout: float = 30.0) -> LocalRegistry:
    """Start a registry storing under `root`; returns once its API answers."""
    binary = registry_binary()
    root.mkdir(parents=True, exist_ok=True)
    auth = _htpasswd_auth(root, users) if users is not None else ""
    # The free port is found by binding and releasing it, so another process may take it first:
    # the registry then exits with "address already in use" and is started on another port.
    for _attempt in range(3):
        port = free_loopback_port()
        config = root / "config.yml"
        config.write_text(
            "version: 0.1\n"
            "log:\n  level: warn\n"
            f"storage:\n  filesystem:\n    rootdirectory: {root / 'data'}\n  delete:\n    enabled: true\n"
            f"http:\n  addr: 127.0.0.1:{port}\n  secret: truss-test-only\n" + auth
        )
        log = root / "registry.log"
        with open(log, "wb") as log_file:
            process = subprocess.Popen([binary, "serve", str(config)], stdout=log_file, stderr=subprocess.STDOUT)
        registry = LocalRegistry(f"127.0.0.1:{port}", root, process, log)
        if _wait_until_answering(registry, timeout):
            return registry
        if "address already in use" not in registry.log_text():
            break
    raise AssertionError(f"docker-registry exited with {process.returncode}:\n{registry.log_text()}")


def _wait_until_answering(registry: LocalRegistry, timeout: float) -> bool:
    """True once the registry answers; False if it exited first."""
    deadline = time.monotonic() + timeout
    while registry.process.poll() is None:
        try:
            # 401 is an answer too: a registry with auth challenges even /v2/.
            if httpx.get(f"http://{registry.host}/v2/", timeout=2.0).status_code in (200, 401):
                return True
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            registry.stop()
            raise AssertionError(
                f"docker-registry did not answer on {registry.host} within {timeout}s:\n{registry.log_text()}"
            )
        time.sleep(0.05)
    return False


def _htpasswd_auth(root: Path, users: dict[str, str]) -> str:
    """The config's auth section, with an htpasswd file of bcrypt hashes (the only form it reads)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        # Deprecated in 3.11 but present; glibc's libxcrypt makes the $2b$ hashes.
        import crypt

        # rounds=16 is bcrypt cost 4, the lowest: these are throwaway test passwords.
        lines = [
            f"{user}:{crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16))}"
            for user, password in users.items()
        ]
    htpasswd = root / "htpasswd"
    htpasswd.write_text("\n".join(lines) + "\n")
    return f"auth:\n  htpasswd:\n    realm: truss-test\n    path: {htpasswd}\n"
