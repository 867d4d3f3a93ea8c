"""What the Kubernetes manifest tests share: offline schema validation with
kubernetes-validate (`--strict`: unknown fields are errors) and golden files.

The versions are the oldest and newest this project claims to support; both must be among
the schemas the installed kubernetes-validate ships (it bundles 1.25 to its own version).
`TRUSS_UPDATE_GOLDEN=1` rewrites the golden files instead of comparing (review the diff).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable

import kubernetes_validate
import yaml

OLDEST_SUPPORTED = "1.29"
NEWEST_SUPPORTED = "1.37"
SUPPORTED_VERSIONS = (OLDEST_SUPPORTED, NEWEST_SUPPORTED)
GOLDEN_DIR = Path(__file__).parent / "golden" / "kubernetes"


def validate_strict(text: str) -> list[dict[str, Any]]:
    """Validates every document of a multi-document YAML text against both supported versions'
    strict schemas (as `kubernetes-validate --strict --kubernetes-version V` does); returns them."""
    bundled = {kubernetes_validate.utils.major_minor(v) for v in kubernetes_validate.utils.all_versions()}
    missing = [v for v in SUPPORTED_VERSIONS if v not in bundled]
    assert not missing, f"kubernetes-validate ships no schema for {missing} (it has {sorted(bundled)})"
    documents = [doc for doc in yaml.safe_load_all(text) if doc is not None]
    assert documents, "no Kubernetes object in the text"
    for document in documents:
        for version in SUPPORTED_VERSIONS:
            try:
                kubernetes_validate.validate(document, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                where = ".".join(str(part) for part in exc.absolute_path)
                raise AssertionError(
                    f"{document['kind']} {document['metadata'].get('name')} is invalid for Kubernetes {version} "
                    f"at {where or '(top)'}: {exc.message}"
                ) from None
    return documents


def assert_golden(name: str, text: str) -> None:
    path = GOLDEN_DIR / name
    if os.environ.get("TRUSS_UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return
    assert path.is_file(), f"no golden file {path}; run with TRUSS_UPDATE_GOLDEN=1 to write it"
    expected = path.read_text(encoding="utf-8")
    assert text == expected, f"{name} differs from its golden file; if the change is meant, rerun with TRUSS_UPDATE_GOLDEN=1 and review the diff"


def kinds(documents: Iterable[dict[str, Any]]) -> list[str]:
    return [document["kind"] for document in documents]
