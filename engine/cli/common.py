"""What every command shares: the Typer app, the consoles, exit-code helpers."""

from typing import NoReturn

import typer
from rich.console import Console

from engine.errors import Problem

app = typer.Typer(
    name="herald",
    help="Notification campaigns for compliance teams: tell every affected user, "
    "in their language, and prove it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def fail(problems: list[Problem] | list[str] | str) -> NoReturn:
    """Print every reason on stderr and exit 1: the input was rejected."""
    for problem in [problems] if isinstance(problems, str) else problems:
        err.print(str(problem), markup=False)
    raise typer.Exit(1)
