"""A model's examples: the file named by `examples_filename` (default `examples.yaml`).

As in Truss, the file is a YAML list of `{name, input}` entries, and an example is found by
its name (the first of that name) or, as Truss's handle also allows, by its 0-based position
when no example has that name. Every problem with the file is a UsageError naming the file
and the entry, so `truss predict --example` never sends a half-read input.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from truss_cli.config import load_config
from truss_cli.errors import UsageError

_FORMAT_HINT = "an examples file is a YAML list of entries such as:\n  - name: hello\n    input: {\"name\": \"world\"}"


@dataclass(frozen=True)
class Example:
    name: str
    input: Any


def examples_path(model_dir: Path) -> Path:
    """Where the model's examples are, as config.yaml's examples_filename says."""
    return Path(model_dir) / load_config(model_dir).config.examples_filename


def read_examples(path: Path) -> list[Example]:
    """Every example in `path`; raises UsageError if the file is missing or malformed."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"{path}: no such examples file", hint=f"{_FORMAT_HINT}\n(examples_filename in config.yaml names another file)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: cannot read it ({exc})") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise UsageError(f"{path}: {where}invalid YAML: {getattr(exc, 'problem', None) or exc}") from None
    if raw is None:  # an empty file, as in Truss
        return []
    if not isinstance(raw, list):
        raise UsageError(f"{path}: expected a list of examples, got {_describe(raw)}", hint=_FORMAT_HINT)
    return [_example(entry, index, path) for index, entry in enumerate(raw)]


def _example(entry: Any, index: int, path: Path) -> Example:
    if not isinstance(entry, dict):
        raise UsageError(f"{path}: [{index}]: expected a mapping with name and input, got {_describe(entry)}", hint=_FORMAT_HINT)
    missing = [key for key in ("name", "input") if key not in entry]
    if missing:
        raise UsageError(f"{path}: [{index}]: expected a mapping with name and input, missing {' and '.join(missing)}", hint=_FORMAT_HINT)
    name = entry["name"]
    if not isinstance(name, str):
        raise UsageError(f"{path}: [{index}].name: expected a string, got {_describe(name)}")
    try:
        json.dumps(entry["input"])
    except (TypeError, ValueError) as exc:
        # YAML reads `2024-01-01` as a date, which has no JSON form.
        raise UsageError(f"{path}: [{index}].input: cannot be sent as JSON ({exc}); quote the value to send it as a string") from None
    return Example(name=name, input=entry["input"])


def find_example(examples: list[Example], wanted: str, path: Path) -> Example:
    """The example named `wanted`, else the one at that 0-based index; UsageError naming the choices."""
    for example in examples:
        if example.name == wanted:
            return example
    if wanted.isdigit() and int(wanted) < len(examples):
        return examples[int(wanted)]
    if not examples:
        raise UsageError(f"{path}: no example named {wanted!r}: the file holds no examples", hint=_FORMAT_HINT)
    names = ", ".join(repr(example.name) for example in examples)
    raise UsageError(
        f"{path}: no example named {wanted!r}; the examples are {names} "
        f"(or give a 0-based index below {len(examples)})"
    )


def example_input(model_dir: Path, wanted: str) -> Any:
    """The input of the example `wanted` of the model in `model_dir`."""
    path = examples_path(model_dir)
    return find_example(read_examples(path), wanted, path).input


def _describe(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)
