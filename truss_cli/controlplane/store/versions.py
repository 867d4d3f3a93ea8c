"""Semantic versions of published deployments: the first is 0.1.0, each next one a bump of the
model's highest version so far (MINOR unless the push says MAJOR or PATCH)."""

from __future__ import annotations

from truss_cli.controlplane.store.errors import StoreError

MAJOR, MINOR, PATCH = "MAJOR", "MINOR", "PATCH"
BUMPS = (MAJOR, MINOR, PATCH)
FIRST = "0.1.0"


def check_bump(bump: str) -> str:
    if bump not in BUMPS:
        raise StoreError(f"unknown version bump {bump!r}", hint=f"use one of {', '.join(BUMPS)}",
                         code="INVALID_VERSION_BUMP")
    return bump


def parse(version: str) -> tuple[int, int, int]:
    major, minor, patch = (int(part) for part in version.split("."))
    return major, minor, patch


def next_version(last: str | None, bump: str) -> str:
    """The version after `last` (the model's highest so far; None before its first)."""
    check_bump(bump)
    if last is None:
        return FIRST
    major, minor, patch = parse(last)
    if bump == MAJOR:
        return f"{major + 1}.0.0"
    if bump == MINOR:
        return f"{major}.{minor + 1}.0"
    return f"{major}.{minor}.{patch + 1}"
