"""The naming rule deployments and environments share (Truss's rule for --deployment-name):
letters, digits, '_', '-' and '.', at most 255 characters. Its own module so the two stores,
which import each other's transactions one way (deployments -> environments), read it from
below both."""

from __future__ import annotations

import re

NAME_PATTERN = re.compile(r"^[0-9a-zA-Z_\-\.]+$")
MAX_NAME_LENGTH = 255


def follows_the_name_rule(name: object) -> bool:
    return isinstance(name, str) and bool(NAME_PATTERN.match(name)) and len(name) <= MAX_NAME_LENGTH
