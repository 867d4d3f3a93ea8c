"""`truss models ...`: list, show (with the code to call a model), describe, readme, delete."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Optional

import typer
from rich.text import Text

from truss_cli.cli import connect, console, edge, tables
from truss_cli.cli.confirm import confirm, yes_option
from truss_cli.cli.deployments_cmd import describe, print_deployments
from truss_cli.cli.editor import edit_text
from truss_cli.cli.help import Command, Group
from truss_cli.errors import UsageError

app = typer.Typer(cls=Group, help="The models on a remote: list, show, describe, readme, delete.", no_args_is_help=True)


def model_argument(what: str = "The model") -> Any:
    return typer.Argument(..., metavar="MODEL", help=f"{what}: its name or id.", show_default=False)


@app.command("list", cls=Command)
def list_models(remote: Optional[str] = connect.remote_option(), output: console.OutputFormat = console.output_option()) -> None:
    """List the remote's models: name, id, production deployment, deployments, status."""
    with connect.api(remote) as api:
        models = api.models()
    if output is console.OutputFormat.json:
        console.result(output, "", {"models": models})
        return
    if not models:
        console.out.print("No models yet. Push one with: truss push DIR")
        return
    tables.print_rows(
        ["NAME", ("ID", {"no_wrap": True}), "PRODUCTION", ("DEPLOYMENTS", {"justify": "right"}), "STATUS"],
        ([m.get("name"), m.get("id"), _production(m), m.get("deployments_count", 0), m.get("status") or "-"] for m in models),
    )


def _production(model: dict[str, Any]) -> str:
    return model.get("production_deployment_name") or model.get("production_deployment_id") or "-"


@app.command("show", cls=Command)
def show(
    model: str = model_argument("The model to show"),
    remote: Optional[str] = connect.remote_option(),
    output: console.OutputFormat = console.output_option(),
) -> None:
    """Show a model: description, type, framework, deployments and versions, and the code to call it.

    The Python and cURL snippets carry the real URL and read the key from $TRUSS_API_KEY.
    """
    with connect.api(remote) as api:
        found = api.model(model)
    if output is console.OutputFormat.json:
        console.result(output, "", found)
        return
    _print_summary(found)
    deployments = found.get("deployments") or []
    if deployments:
        console.out.print()
        console.out.print(Text("Deployments", style="bold"))
        print_deployments(deployments)
    _print_invocation(found)


def _print_summary(model: dict[str, Any]) -> None:
    console.out.print(Text.assemble((str(model.get("name")), "bold"), f" ({model.get('id')})"))
    readme = model.get("readme") or ""
    facts = [
        ("Description", model.get("description") or f"(none: truss models describe {model.get('name')} \"text\")"),
        ("Type", model.get("type") or "Custom"),
        ("Framework", model.get("framework") or "Custom"),
        ("Production", _production(model)),
        ("Status", model.get("status") or "-"),
        ("Created", tables.ago(model.get("created_at"))),
        ("README", f"{len(readme.splitlines())} lines (truss models readme {model.get('name')})" if readme else "(none)"),
    ]
    grid = tables.table(("", {"style": "dim", "no_wrap": True}), "")
    grid.show_header = False
    for key, value in facts:
        tables.add_row(grid, [key, value])
    tables.print_table(grid)


def _print_invocation(model: dict[str, Any]) -> None:
    """Code to paste: printed unwrapped and unindented, so a copied snippet runs as it is."""
    invocation = model.get("invocation") or {}
    if invocation:
        console.out.print()
    production = invocation.get("production")
    if production:
        _heading("Call the production deployment")
        console.out.print(Text.assemble(("URL: ", "dim"), str(production.get("url"))), soft_wrap=True)
        console.out.print()
        _code("Python:", production.get("python"))
        _code("cURL:", production.get("curl"))
    _print_environments(model, invocation)
    others = invocation.get("deployments") or []
    if others:
        _heading("Call one deployment (the Python snippet differs only in the URL)")
        for item in others:
            _code(f"{describe(item)}:", item.get("curl"))


def _print_environments(model: dict[str, Any], invocation: dict[str, Any]) -> None:
    """Each environment's URL and the deployment serving it (production first), one line each
    so a URL is never folded."""
    production = invocation.get("production")
    rows = ([{"name": "production", **production}] if production else []) + list(invocation.get("environments") or [])
    if not rows:
        return
    _heading("Environments (the deployment serving each, and its URL)")
    for row in rows:
        name = str(row.get("name"))
        serving = row.get("deployment")
        who = (Text(describe(serving)) if serving
               else Text(f"no deployment yet (truss push --environment {name})", style="dim"))
        console.out.print(Text.assemble((name, "bold"), "  ", who), soft_wrap=True)
        console.out.print(Text.assemble("  ", str(row.get("url"))), soft_wrap=True)
    console.out.print()


def _heading(text: str) -> None:
    console.out.print(Text(text, style="bold"), soft_wrap=True)


def _code(label: str, code: Optional[str]) -> None:
    if not code:
        return
    console.out.print(Text(label, style="dim"), soft_wrap=True)
    console.out.print(str(code).rstrip("\n"), markup=False, highlight=False, soft_wrap=True)
    console.out.print()


@app.command("describe", cls=Command)
def describe_model(
    model: str = model_argument("The model to describe"),
    description: str = typer.Argument(..., metavar="TEXT", help="The new description (\"\" clears it).", show_default=False),
    remote: Optional[str] = connect.remote_option(),
    output: console.OutputFormat = console.output_option(),
) -> None:
    """Set a model's one-line description (shown by `truss models show`)."""
    with connect.api(remote) as api:
        updated = api.update_model(model, description=description)
    console.result(output, f"Description of model {updated.get('name', model)} set" + ("" if description else " (cleared)"), updated)


@app.command("readme", cls=Command)
def readme(
    model: str = model_argument("The model whose README to print or change"),
    set_file: Optional[Path] = typer.Option(None, "--set", metavar="FILE", allow_dash=True, help="Replace the README with this markdown file ('-' reads standard input)."),
    edit: bool = typer.Option(False, "--edit", help="Open the README in $VISUAL (else $EDITOR); it is saved when you change it."),
    remote: Optional[str] = connect.remote_option(),
    output: console.OutputFormat = console.output_option(),
) -> None:
    """Print a model's README (markdown), or change it with --set FILE or --edit.

    The first push of a model takes its README from the README.md of the pushed directory.
    """
    if set_file is not None and edit:
        raise UsageError("--set and --edit cannot be used together: choose one way to change the README")
    with connect.api(remote) as api:
        if set_file is not None:
            updated = api.update_model(model, readme=_read_file(set_file))
            console.result(output, f"README of model {updated.get('name', model)} set ({_lines(updated.get('readme'))})", _readme_view(updated))
            return
        current = api.model(model)
        if edit:
            edited = edit_text(current.get("readme") or "", edge.settings().environ)
            if edited is None:
                console.result(output, f"README of model {current.get('name', model)} unchanged: nothing saved", _readme_view(current))
                return
            updated = api.update_model(model, readme=edited)
            console.result(output, f"README of model {updated.get('name', model)} saved ({_lines(updated.get('readme'))})", _readme_view(updated))
            return
    text = current.get("readme") or ""
    if output is console.OutputFormat.json:
        console.result(output, "", _readme_view(current))
    elif text:
        console.out.print(text.rstrip("\n"), markup=False, highlight=False, soft_wrap=True)
    else:
        console.err.print(f"Model {current.get('name', model)} has no README; set one with --set FILE or --edit", markup=False)


def _read_file(path: Path) -> str:
    if str(path) == "-":
        return sys.stdin.read()
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"--set: {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"--set: {path}: cannot read it ({exc})") from None


def _readme_view(model: dict[str, Any]) -> dict[str, Any]:
    return {"id": model.get("id"), "name": model.get("name"), "readme": model.get("readme") or ""}


def _lines(text: Optional[str]) -> str:
    count = len((text or "").splitlines())
    return f"{count} line" + ("" if count == 1 else "s")


@app.command("delete", cls=Command)
def delete(
    model: str = model_argument("The model to delete"),
    yes: bool = yes_option("deleting"),
    remote: Optional[str] = connect.remote_option(),
    output: console.OutputFormat = console.output_option(),
) -> None:
    """Delete a model and all its deployments for good (replicas, builds, stored files).

    Its usage stays in `truss usage`.
    """
    with connect.api(remote) as api:
        found = api.model(model)
        count = found.get("deployments_count", len(found.get("deployments") or []))
        confirm(
            f"Delete model {found.get('name')} ({found.get('id')}) and its {count} deployment{'' if count == 1 else 's'}? This cannot be undone.",
            yes=yes,
            action=f"delete model {found.get('name')}",
        )
        deleted = api.delete_model(str(found["id"]))
    console.result(output, f"Deleted model {found.get('name')} ({found.get('id')}) and its {count} deployment{'' if count == 1 else 's'}", deleted)
