"""`--help` that reads like a hand-written CLI's: `--port PORT`, `DIRECTORY`, plain flags.

Typer shows Python types instead (`<int range>`, `<bool>` after every flag, required
arguments as `{model_dir}`). Commands registered with `cls=Command` show each option's
metavar (or nothing for a flag) and each argument by its metavar, in brackets when optional.
"""

from __future__ import annotations

from typing import Any, Optional

from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption


class _Argument(TyperArgument):
    @property
    def display_name_raw(self) -> str:  # type: ignore[override]
        return self.metavar or (self.name or "").upper()

    def display_type_rich(self, ctx: Any) -> Optional[str]:
        return None  # the name says what it is

    def _usage_display_name(self) -> str:
        name = self.display_name_raw
        if not self.required:
            name = f"[{name}]"
        return name + ("..." if self.nargs != 1 else "")


class _Option(TyperOption):
    def display_type_rich(self, ctx: Any) -> Optional[str]:
        if self.is_flag:
            return None
        return self.metavar or (self.name or "").upper()

    def make_metavar(self, ctx: Any) -> str:  # plain (non-rich) help and errors
        return self.metavar or (self.name or "").upper()


def _polished(param: Any) -> Any:
    # Typer builds its own parameter objects; the subclasses only change how they are shown.
    if type(param) is TyperArgument:
        param.__class__ = _Argument
    elif type(param) is TyperOption:
        param.__class__ = _Option
    return param


class Command(TyperCommand):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.params = [_polished(param) for param in self.params]

    def get_help_option(self, ctx: Any) -> Any:
        option = super().get_help_option(ctx)
        return _polished(option) if option is not None else None


class Group(TyperGroup):
    """A command group whose own options (`--version`, `--install-completion`, `--help`) are
    shown the same way."""

    def get_params(self, ctx: Any) -> list:
        # Typer appends the completion options after construction, so they are polished here.
        return [_polished(param) for param in super().get_params(ctx)]

    def get_help_option(self, ctx: Any) -> Any:
        option = super().get_help_option(ctx)
        return _polished(option) if option is not None else None
