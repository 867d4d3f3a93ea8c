"""The tests' engine cleanup (registry_support.remove_references_to): what a test module pushed
to its registry is removed from the engine at teardown under both of its names, and nothing
else is, on the real engine (tags only: no registry needs to run for them)."""

from __future__ import annotations

import docker
import pytest

from docker_support import base_image, engine, unique_name
from registry_support import remove_references_to

pytestmark = pytest.mark.docker


def test_a_registrys_tags_and_their_local_twins_go_and_other_tags_of_the_same_image_stay() -> None:
    client = engine()
    image = base_image(client)
    name = unique_name("truss-cleanup")
    ours, twin = f"127.0.0.1:1/models/{name}:d1", f"{name}:d1"
    kept = [f"{name}:other", f"127.0.0.1:2/models/{name}:d1"]  # another build's tag, another registry's push
    for reference in (ours, twin, *kept):
        repository, _, tag = reference.rpartition(":")
        client.tag(image, repository, tag)
    try:
        assert remove_references_to(client, "127.0.0.1:1") == []
        tags = {tag for found in client.images() for tag in found.get("RepoTags") or []}
        assert ours not in tags and twin not in tags
        assert set(kept) <= tags and image in tags  # the same image, still there under its other names
    finally:
        for reference in (ours, twin, *kept):
            try:
                client.remove_image(reference)
            except docker.errors.NotFound:
                pass
