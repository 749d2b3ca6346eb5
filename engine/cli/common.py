"""What every command shares: the Typer app, the consoles, exit-code helpers."""

import os
from typing import NoReturn

import typer
from rich.console import Console
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from engine.config import Settings
from engine.errors import ConfigError, Problem
from engine.store import open_database

app = typer.Typer(
    name="herald",
    help="Notification campaigns for compliance teams: tell every affected user, "
    "in their language, and prove it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _private_files() -> None:
    # Before any command runs: every file and folder Herald creates (the database and
    # its -wal/-shm, the outbox, var/, the campaign specs) holds personal data or
    # secrets, so none is readable by group or others.
    os.umask(0o077)


out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def fail(problems: list[Problem] | list[str] | str) -> NoReturn:
    """Print every reason on stderr and exit 1: the input was rejected."""
    for problem in [problems] if isinstance(problems, str) else problems:
        err.print(str(problem), markup=False)
    raise typer.Exit(1)


def open_store() -> tuple[Settings, Engine]:
    """Settings and the database, or exit 1 saying what is wrong with them."""
    try:
        settings = Settings.from_env()
        return settings, open_database(settings.db_url)
    except ConfigError as exc:
        fail(str(exc))
    except SQLAlchemyError as exc:
        fail(f"cannot open the database: {exc.__class__.__name__}: {exc}")
