"""What every command shares: the Typer app, the consoles, exit-code helpers.

Start-up time: `herald --help` and `herald validate` must start at once, so the command
modules import the database, the web stack and the renderer inside the commands that use
them, never at module level (tests/test_cli_startup.py holds this).
"""

import contextlib
import csv
import errno
import gc
import json
import os
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TextIO

import typer
from rich.console import Console

from engine.errors import ConfigError, Problem

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from engine.config import Settings

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


# `--host` of the two servers (herald serve, herald bounces serve): loopback by default.
ListenHost = Annotated[
    str, typer.Option("--host", help="Address to listen on; loopback unless you say otherwise.")
]


class TableOrJson(StrEnum):
    TABLE = "table"
    JSON = "json"


class ReportFormat(StrEnum):
    TABLE = "table"
    JSON = "json"
    HTML = "html"


class CsvOrJsonl(StrEnum):
    CSV = "csv"
    JSONL = "jsonl"


def open_out(path: Path) -> TextIO:
    """`path` opened for writing (UTF-8); fails naming it when it cannot be written."""
    try:
        return path.open("w", encoding="utf-8", newline="")
    except OSError as exc:
        fail(f"cannot write {path}: {exc.strerror or exc}")


def write_records(
    records: Iterable[Mapping[str, Any]],
    fields: Sequence[str],
    fmt: CsvOrJsonl,
    out_file: Path | None,
) -> int:
    """Write `records` as CSV (with a header) or JSON lines to `out_file`, or stdout; how
    many. Streams: one record at a time. Fails naming the file it cannot write."""
    fp = open_out(out_file) if out_file else sys.stdout
    count = 0
    try:
        writer = csv.DictWriter(fp, fields, lineterminator="\n") if fmt is CsvOrJsonl.CSV else None
        if writer:
            writer.writeheader()
        for record in records:
            if writer:
                writer.writerow(record)
            else:
                fp.write(json.dumps(record, ensure_ascii=False) + "\n")
            count += 1
    finally:
        if out_file:
            fp.close()
    return count


class LogFormat(StrEnum):
    PLAIN = "plain"
    JSON = "json"


def campaign_id_of(campaign: str) -> str:
    """The id a campaign argument names: a file's stem, or the id itself."""
    path = Path(campaign)
    return path.stem if path.suffix in (".yaml", ".yml") else campaign


def fail(problems: list[Problem] | list[str] | str) -> NoReturn:
    """Print every reason on stderr and exit 1: the input was rejected."""
    for problem in [problems] if isinstance(problems, str) else problems:
        err.print(str(problem), markup=False)
    raise typer.Exit(1)


_whole_process = False  # set by run_as_process(): the command is this process's one job


def run_as_process() -> None:
    """Run the command line as the `herald` process: see importing(). A full disk, a
    locked or unwritable database, a file it may not write: one line saying what and
    where, and exit 1, not a traceback (HERALD_DEBUG=1 shows it)."""
    global _whole_process
    _whole_process = True
    try:
        app()
    except Exception as exc:
        problem = _surroundings(exc)
        if problem is None or os.environ.get("HERALD_DEBUG") == "1":
            raise
        err.print(
            f"herald: {problem}. What was not recorded is done again when the command runs "
            "again (HERALD_DEBUG=1 for the traceback)",
            markup=False,
        )
        raise SystemExit(1) from None


_SURROUNDINGS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG}


def _surroundings(exc: BaseException) -> str | None:
    """What is wrong around Herald (disk, permissions, the database server), if `exc` says
    so; None for anything else, which stays a traceback: a bug of ours."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:  # it, then what caused it
        if isinstance(current, OSError) and current.errno in _SURROUNDINGS:
            return f"{current.filename or 'a file'}: {current.strerror}"
        kind = type(current)
        if kind.__module__.startswith("sqlalchemy") and kind.__name__ == "OperationalError":
            reason = str(getattr(current, "orig", current)).strip().splitlines()[0]
            return f"the database: {reason}"
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


@contextlib.contextmanager
def importing() -> Iterator[None]:
    """Around a command's imports of what it runs on (sqlalchemy, pydantic, Jinja, Babel:
    ~90k objects that live as long as the process). The collector is off meanwhile: it
    walked them over and over as they grew (~50 ms of the imports' ~0.4 s), and after
    them it stops walking them at each full collection (gc.freeze): `herald plan` of
    17,495 deliveries ~1.36 -> ~1.13 s of CPU, its validation alone 0.49 -> 0.38 s. What
    the imports left as garbage (~2 MB) is kept with them; a process that forks (send's
    workers) also keeps these pages shared.

    Only in a `herald` process (run_as_process), which ends with its command: a process
    that runs commands in turn (a test's CliRunner) would keep each one's garbage."""
    if not _whole_process:
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.enable()


def open_settings() -> "Settings":
    """The settings alone, for commands that need no database (the signing key's); makes
    no key file; exit 1 saying what is wrong with them."""
    from engine.config import Settings

    try:
        return Settings.from_env(create=False)
    except ConfigError as exc:
        fail(str(exc))


def open_store(create: bool = True) -> "tuple[Settings, Engine]":
    """Settings and the database, or exit 1 saying what is wrong with them.

    `create=False` for commands that only read the record: they exit 1 with "no database
    at …" rather than create an empty database wherever they were run, and make no key.
    """
    from sqlalchemy.exc import SQLAlchemyError

    from engine.config import Settings, database_url
    from engine.store import open_database

    try:
        if create:
            settings = Settings.from_env()
            return settings, open_database(settings.db_url)
        engine = open_database(database_url(), create=False)
        return Settings.from_env(create=False), engine
    except ConfigError as exc:
        fail(str(exc))
    except SQLAlchemyError as exc:
        from sqlalchemy.engine import make_url

        where = make_url(database_url()).render_as_string(hide_password=True)
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        fail(f"cannot open the database {where}: {reason}")
