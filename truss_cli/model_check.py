"""A quick static look at the model's code before anything slow (an environment, an image).

Without it a typo in `model.py` surfaces minutes later, inside a build log or a container's
log. It reads the file without importing it (importing would need the model's requirements
and run its module-level code): the file exists, it parses, it defines the class config.yaml
names, and that class has `predict` (or `websocket`, which replaces it). It only rejects what is certainly wrong: a class whose
`predict` may come from a base class, a decorator or a name bound by an import passes.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

from truss_cli.config import CONFIG_FILENAME, TrussConfig
from truss_cli.errors import UsageError

_PREDICT = "predict"
# A Truss model serves either predict requests or, instead, a websocket.
_ENTRY_POINTS = {_PREDICT, "websocket"}


def check_model_dir(model_dir: Path | str, config: TrussConfig) -> None:
    """Raise UsageError (exit 2) naming the file, line and problem if the model cannot load."""
    if config.docker_server is not None:
        return  # a custom server replaces the model class: there is no model.py to check
    model_dir = Path(model_dir)
    path = model_dir / config.model_module_dir / config.model_class_filename
    settings = (
        f"{model_dir / CONFIG_FILENAME}: model_module_dir {config.model_module_dir!r}, "
        f"model_class_filename {config.model_class_filename!r}"
    )
    if not path.is_file():
        raise UsageError(f"{path}: the model file is missing", hint=f"it is named by {settings}")
    tree = _parse(path, config)
    if tree is None:
        return
    name = config.model_class_name
    found, classes, bound_otherwise = _top_level_class(tree.body, name)
    if found is None:
        if bound_otherwise:  # `from .impl import Model`, `Model = make()`: not visible statically
            return
        defined = f"it defines {', '.join(classes)}" if classes else "it defines no class"
        raise UsageError(
            f"{path}: no class {name!r} at the top level ({defined})",
            hint=f"rename the class, or set model_class_name in {model_dir / CONFIG_FILENAME}",
        )
    if _may_get_methods_elsewhere(found) or _ENTRY_POINTS & _names_bound_in(found.body):
        return
    raise UsageError(
        f"{path}:{found.lineno}: class {name} has no {_PREDICT}() method",
        hint="the server calls Model.predict(model_input) for every request; define it",
    )


def _parse(path: Path, config: TrussConfig) -> ast.Module | None:
    source = path.read_bytes()
    try:
        return ast.parse(source, filename=str(path))
    except SyntaxError as exc:
        if sys.version_info[:2] < config.python_minor:
            # Newer syntax than this interpreter knows may be valid for the model's Python.
            return None
        line = (exc.text or "").rstrip("\n")
        pointer = ""
        if line and exc.offset:
            indent = len(line) - len(line.lstrip())
            pointer = "\n    " + " " * max(0, exc.offset - 1 - indent) + "^"
        shown = f"\n    {line.strip()}{pointer}" if line.strip() else ""
        raise UsageError(f"{path}:{exc.lineno}: {exc.msg}{shown}") from None
    except ValueError as exc:  # e.g. null bytes in the source
        raise UsageError(f"{path}: cannot be read as Python source ({exc})") from None


def _top_level_class(body: list[ast.stmt], name: str) -> tuple[ast.ClassDef | None, list[str], bool]:
    """(the class `name`, all class names seen, whether `name` is bound some other way).

    Statements under a top-level `if`/`try`/`with` count: `try: import x` / `except: class
    Model` is a common pattern.
    """
    found: ast.ClassDef | None = None
    classes: list[str] = []
    bound_otherwise = False
    for statement in _flatten(body):
        if isinstance(statement, ast.ClassDef):
            classes.append(statement.name)
            if statement.name == name and found is None:
                found = statement
        elif {name, "*"} & _names_bound_by(statement):  # `from x import *` may bind it too
            bound_otherwise = True
    return found, classes, bound_otherwise


def _flatten(body: list[ast.stmt]) -> list[ast.stmt]:
    """The statements of `body`, descending into compound statements but not into defs."""
    flat: list[ast.stmt] = []
    for statement in body:
        flat.append(statement)
        if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        for attribute in ("body", "orelse", "finalbody"):
            flat.extend(_flatten(getattr(statement, attribute, None) or []))
        for handler in getattr(statement, "handlers", None) or []:
            flat.extend(_flatten(handler.body))
        for case in getattr(statement, "cases", None) or []:
            flat.extend(_flatten(case.body))
    return flat


def _names_bound_in(body: list[ast.stmt]) -> set[str]:
    names: set[str] = set()
    for statement in _flatten(body):
        if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(statement.name)
        names |= _names_bound_by(statement)
    return names


def _names_bound_by(statement: ast.stmt) -> set[str]:
    if isinstance(statement, (ast.Import, ast.ImportFrom)):
        return {(alias.asname or alias.name).split(".")[0] for alias in statement.names}
    targets: list[ast.expr] = []
    if isinstance(statement, ast.Assign):
        targets = statement.targets
    elif isinstance(statement, (ast.AnnAssign, ast.AugAssign)):
        targets = [statement.target]
    names: set[str] = set()
    for target in targets:
        for node in ast.walk(target):
            if isinstance(node, ast.Name):
                names.add(node.id)
    return names


def _may_get_methods_elsewhere(cls: ast.ClassDef) -> bool:
    """A base other than `object`, a metaclass or a decorator can supply predict."""
    bases = [base for base in cls.bases if not (isinstance(base, ast.Name) and base.id == "object")]
    return bool(bases or cls.keywords or cls.decorator_list)
