"""What the image tests share: a reachable engine (or a skip, or a CI failure), the base image
to build FROM, and cleanup of every container and image a test creates."""

from __future__ import annotations

import os
import re
import uuid

import docker
import docker.errors
import pytest

from conftest import IN_CI

CI_BASE_IMAGE = "truss-ci-base:bookworm"
SETUP_HINT = "run `source .ci/docker-setup.sh` (installs and starts dockerd, builds the offline base image)"


def engine() -> docker.APIClient:
    """The local engine; skips the test without one, except in CI where that is a failure."""
    try:
        client = docker.from_env(timeout=3600).api
        client.ping()
        return client
    except docker.errors.DockerException as exc:
        message = f"no Docker engine reachable ({exc}); {SETUP_HINT}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)


def base_image(client: docker.APIClient) -> str:
    """TRUSS_BASE_IMAGE, else the CI base image if this machine has it (Docker Hub is not
    reachable here, so the public default `python:X-slim` cannot be assumed)."""
    chosen = os.environ.get("TRUSS_BASE_IMAGE") or CI_BASE_IMAGE
    try:
        client.inspect_image(chosen)
    except docker.errors.ImageNotFound:
        message = f"base image {chosen} is not on this machine; {SETUP_HINT} or set TRUSS_BASE_IMAGE"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return chosen


def unique_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


class Cleanup:
    """Removes the containers and images of the model names registered with it."""

    def __init__(self, client: docker.APIClient):
        self.client = client
        self.model_names: list[str] = []
        self.tags: list[str] = []
        self.partial_images: list[str] = []

    def model(self, name: str) -> str:
        self.model_names.append(name)
        return name

    def tag(self, tag: str) -> str:
        self.tags.append(tag)
        return tag

    def failed_build(self, output: str) -> None:
        """A failed build leaves its last good step as an untagged image (useful cache for a
        retry, litter for a test): find it in the build log."""
        self.partial_images.extend(re.findall(r"^ ?---> ([0-9a-f]{12})$", output, flags=re.MULTILINE)[-1:])

    def run(self) -> None:
        for name in self.model_names:
            label = f"truss.model-name={name}"
            for container in self.client.containers(all=True, filters={"label": label}):
                self.client.remove_container(container["Id"], force=True)
        images = set(self.tags)
        for name in self.model_names:
            for image in self.client.images(filters={"label": f"truss.model-name={name}"}):
                images.add(image["Id"])
        for image in images:
            try:
                self.client.remove_image(image, force=True)
            except docker.errors.NotFound:
                pass
        for image in self.partial_images:
            try:
                # Not forced: if a later build made it a parent of a tagged image, it stays.
                self.client.remove_image(image)
            except docker.errors.APIError:
                pass
