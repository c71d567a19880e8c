"""What every ``furui`` sub-command shares: the error boundary, ``--json`` and ``--config``."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated, ParamSpec, TypeVar

import typer

from correlator.errors import FuruiError

P = ParamSpec("P")
R = TypeVar("R")

JsonOption = Annotated[
    bool, typer.Option("--json", help="Print machine-readable JSON on stdout instead of tables.")
]
ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="Site settings file (TOML); see `furui settings show`.",
        envvar="FURUI_CONFIG",
        show_default=False,
    ),
]


def fail_cleanly(func: Callable[P, R]) -> Callable[P, R]:
    """Turn Furui's own errors into a one-line message and their exit code.

    Anything else is a bug and keeps its traceback.
    """

    @wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except FuruiError as error:
            # plain text: one line, never wrapped, whatever the terminal width
            typer.echo(f"furui: error: {error}", err=True)
            raise typer.Exit(int(error.exit_code)) from error

    return wrapper
