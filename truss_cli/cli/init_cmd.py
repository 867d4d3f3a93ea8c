"""`truss init`: write a new model directory that `truss run` serves as it is."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Optional

import typer

from truss_cli.cli import console
from truss_cli.config import parse_config
from truss_cli.errors import UsageError
from truss_cli.local.interpreters import SUPPORTED_MINORS
from truss_cli.resources import render_template, templates_dir

_TEMPLATES = "init"
_TEMPLATE_SUFFIX = ".jinja"


def init(
    directory: Path = typer.Argument(..., metavar="DIRECTORY", help="Where to create the model directory (must not exist, or be empty)."),
    name: Optional[str] = typer.Option(None, "--name", "-n", metavar="NAME", help="The model's name (config.yaml model_name). Default: the directory's name."),
) -> None:
    """Create a model directory: config.yaml, model/__init__.py and model/model.py.

    The result runs as it is: `truss run DIR`, then `truss predict -d '{"text": "hi"}'`.
    """
    target = directory.resolve()
    _refuse_unless_empty(directory, target)
    model_name = name if name is not None else target.name
    if not model_name.strip():
        raise UsageError("--name: the model name cannot be empty")
    files = render_init_files(model_name, _default_python_version())
    _write_all(target, files)
    console.out.print(f"Created {directory} ({', '.join(sorted(files))})", markup=False)
    console.out.print(f"Serve it with: truss run {directory}", markup=False)


def render_init_files(model_name: str, python_version: str) -> dict[str, str]:
    """Relative path -> content for every file of a new model directory."""
    root = templates_dir() / _TEMPLATES
    files = {}
    for template in sorted(root.rglob(f"*{_TEMPLATE_SUFFIX}")):
        relative = template.relative_to(root).as_posix()
        # The name goes through `yaml_string`: quotes, colons and unicode stay safe.
        rendered = render_template(f"{_TEMPLATES}/{relative}", model_name=model_name, python_version=python_version)
        files[relative[: -len(_TEMPLATE_SUFFIX)]] = rendered
    # A template that renders to an invalid config would be a bug; catch it before writing.
    parse_config(files["config.yaml"], "config.yaml")
    return files


def _default_python_version() -> str:
    """The Python running truss (when the server supports it): `truss run` then needs no other."""
    minor = sys.version_info[1]
    if sys.version_info[0] == 3 and minor in SUPPORTED_MINORS:
        return f"py3{minor}"
    return f"py3{min(SUPPORTED_MINORS, key=lambda supported: abs(supported - minor))}"


def _refuse_unless_empty(directory: Path, target: Path) -> None:
    if target.is_dir():
        if any(target.iterdir()):
            raise UsageError(
                f"{directory}: directory is not empty; truss init never overwrites files",
                hint="pick a new directory name, or empty this one first",
            )
    elif target.exists():
        raise UsageError(f"{directory}: exists and is not a directory")


def _write_all(target: Path, files: dict[str, str]) -> None:
    """Write every file, or (on failure) remove whatever this call created."""
    created_root = not target.exists()
    written: list[Path] = []
    try:
        target.mkdir(parents=True, exist_ok=True)
        for relative, content in files.items():
            path = target / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content, encoding="utf-8")
            written.append(path)
    except OSError as exc:
        if created_root:
            shutil.rmtree(target, ignore_errors=True)
        else:
            for path in written:
                path.unlink(missing_ok=True)
            shutil.rmtree(target / "model", ignore_errors=True)
        raise UsageError(f"{target}: cannot write the model directory ({exc.strerror or exc})") from None
