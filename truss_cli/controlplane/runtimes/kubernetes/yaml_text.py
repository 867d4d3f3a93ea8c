"""Kubernetes objects as the multi-document YAML `kubectl apply -f -` reads.

Keys keep their insertion order (apiVersion, kind, metadata, spec read top-down as in the
Kubernetes docs), so the output is stable and reviewable; golden files compare it exactly.
"""

from __future__ import annotations

from typing import Any, Iterable

import yaml


def to_yaml(objects: Iterable[dict[str, Any]]) -> str:
    return "".join("---\n" + yaml.safe_dump(item, sort_keys=False, default_flow_style=False, allow_unicode=True, width=1000)
                   for item in objects)
