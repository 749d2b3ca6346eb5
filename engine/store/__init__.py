"""Database access: engine setup and schema. I/O: the database named by HERALD_DB.

The store is synchronous (SQLAlchemy Core on the hot paths, SQLModel for the schema).
Its writes are short batched transactions; the dispatcher runs them on one worker
thread so the event loop keeps its SMTP connections busy meanwhile.

May import: the core only. No business rules live here.
"""

import functools
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    Column,
    ColumnElement,
    Connection,
    CursorResult,
    Engine,
    Table,
    create_engine,
    event,
    inspect,
    select,
    text,
)
from sqlmodel import SQLModel

from engine.errors import ConfigError
from engine.store import schema, tables  # tables declares (registers) the tables

if TYPE_CHECKING:
    from sqlalchemy.dialects import postgresql, sqlite


def open_database(url: str, create: bool = True) -> Engine:
    """Connect, create missing tables, and tune SQLite for many small concurrent writers.

    With `create=False` the database must already hold Herald's tables: commands that only
    read the record (status, report, verify, export) must never answer from a new, empty
    database made by mistake in the wrong folder. Raises ConfigError("no database at …").
    Errors never carry a statement's parameters (a reason, a user id) into a log, and a
    SQLite database and its -wal and -shm files are readable by their owner only.
    """
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        if str(path) != ":memory:":
            if not create and not path.is_file():
                raise ConfigError(
                    f"no database at {path}: run this where Herald keeps its state, "
                    "or point HERALD_DB (or HERALD_VAR) at it"
                )
            _private_sqlite_files(path)
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 60}, hide_parameters=True
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
    else:
        engine = create_engine(url, pool_pre_ping=True, hide_parameters=True)
    if not create and not inspect(engine).has_table("campaign"):
        where = engine.url.render_as_string(hide_password=True)
        engine.dispose()
        raise ConfigError(f"no database at {where}: it holds no Herald tables")
    schema.retire_v0(engine)
    SQLModel.metadata.create_all(engine)
    _add_missing_columns(engine)
    _widen_delivery_key(engine)
    schema.append_only(engine)
    schema.update_indexes(engine)
    return engine


def _private_sqlite_files(path: Path) -> None:
    """Create the database file 0600 (SQLite gives its -wal and -shm files the database
    file's mode), and take group and other access from files an earlier version made."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    # Never open (and close) an existing database file here: closing any descriptor of
    # it drops the POSIX locks SQLite holds through this process's other connections.
    if not path.exists():
        try:
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        except FileExistsError:  # another process created it first
            pass
    for file in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        # only a file: HERALD_DB naming a folder by mistake (sqlite:////tmp) must not
        # take it from everyone else; opening it then fails, saying so
        if file.is_file() and file.stat().st_mode & 0o077:
            file.chmod(0o600)


def _add_missing_columns(engine: Engine) -> None:
    """Migrate a database made by an earlier version: tables are created by create_all,
    and columns added since then (each nullable or with a default) are added here."""
    existing = inspect(engine)
    with engine.begin() as conn:
        for table in SQLModel.metadata.sorted_tables:
            have = {c["name"] for c in existing.get_columns(table.name)}
            for column in table.columns:
                if column.name in have:
                    continue
                kind = column.type.compile(dialect=engine.dialect)
                default = column.server_default
                clause = ""
                if default is not None:
                    value = default.arg  # type: ignore[attr-defined]
                    if isinstance(value, str):
                        value = "'" + value.replace("'", "''") + "'"
                    elif hasattr(value, "compile"):
                        value = value.compile(dialect=engine.dialect)
                    clause = f" DEFAULT {value}"
                conn.exec_driver_sql(
                    f'ALTER TABLE "{table.name}" ADD COLUMN "{column.name}" {kind}{clause}'
                )


def _widen_delivery_key(engine: Engine) -> None:
    """Migrate a database made before confirmations: a user may now have two deliveries
    per campaign and channel (the notice and the confirmation of their objection)."""
    old = ["campaign_id", "user_id", "channel"]
    found = [
        c for c in inspect(engine).get_unique_constraints("delivery") if c["column_names"] == old
    ]
    if not found:
        return
    delivery = tables.DeliveryRow.__table__  # type: ignore[attr-defined]
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql(f'ALTER TABLE delivery DROP CONSTRAINT "{found[0]["name"]}"')
            conn.exec_driver_sql(
                "ALTER TABLE delivery ADD UNIQUE (campaign_id, user_id, channel, message)"
            )
            return
        # SQLite cannot drop a constraint: rebuild the table under the new declaration.
        columns = ", ".join(f'"{c.name}"' for c in delivery.columns)
        conn.exec_driver_sql("ALTER TABLE delivery RENAME TO delivery_before_migration")
        for index in delivery.indexes:
            conn.exec_driver_sql(f'DROP INDEX IF EXISTS "{index.name}"')
        delivery.create(conn)
        conn.exec_driver_sql(
            f"INSERT INTO delivery ({columns}) SELECT {columns} FROM delivery_before_migration"
        )
        conn.exec_driver_sql("DROP TABLE delivery_before_migration")


_NAMED = re.compile(r"(?<!:):(\w+)")


@functools.cache
def _driver_sql(sql: str, dialect: str) -> str:
    return sql if dialect == "sqlite" else _NAMED.sub(r"%(\1)s", sql)


def upsert_into(conn: Connection, table: Table) -> "sqlite.Insert | postgresql.Insert":
    """INSERT into `table` in `conn`'s dialect, which has ON CONFLICT. Each dialect is
    imported when first used: sqlalchemy.dialects.postgresql took ~17 ms of CPU at the
    start of every command on SQLite, where nothing used it."""
    if conn.dialect.name == "sqlite":
        from sqlalchemy.dialects import sqlite

        return sqlite.insert(table)
    from sqlalchemy.dialects import postgresql

    return postgresql.insert(table)


def executemany(conn: Connection, sql: str, rows: Sequence[Mapping[str, Any]]) -> None:
    """Run `sql` (with :name parameters) once per row, straight through the driver.

    The hot paths write thousands of rows a second; SQLAlchemy's statement layer costs
    several times the driver's own work there, so they skip it.
    """
    if rows:
        conn.exec_driver_sql(_driver_sql(sql, conn.dialect.name), list(rows))


def dicts(result: CursorResult[Any]) -> list[dict[str, Any]]:
    """Every row as a plain dict. zip over the keys once: dict(row_mapping) rebuilds the
    key view for every row, and cost claims and user lookups ~15% of an in-app send."""
    keys = tuple(result.keys())
    return [dict(zip(keys, row, strict=True)) for row in result]


def pages(
    engine: Engine, table: Table, condition: ColumnElement[bool], key: Column[Any], size: int
) -> Iterator[list[dict[str, Any]]]:
    """Rows matching `condition` in `key` order, `size` at a time (keyset pagination:
    each page is one indexed range scan, and nothing is held open between pages)."""
    last: Any = None
    while True:
        query = select(table).where(condition)
        if last is not None:
            query = query.where(key > last)
        with engine.connect() as conn:
            rows = dicts(conn.execute(query.order_by(key).limit(size)))
        if not rows:
            return
        next_after = rows[-1][key.name]  # read before the caller may change the rows
        yield rows
        last = next_after


def stream(engine: Engine, sql: str, params: Mapping[str, Any], batch: int = 5000) -> Iterator[Any]:
    """Rows of one read, fetched `batch` at a time (a server-side cursor on PostgreSQL; one
    snapshot on SQLite's WAL): for reads of millions of rows in one order, which keyset
    pages would turn into one index search per page."""
    with engine.connect() as conn:
        result = conn.execution_options(stream_results=True, yield_per=batch).execute(
            text(sql), dict(params)
        )
        yield from result


def one_of(conn: Connection, column: str, values: Sequence[Any]) -> tuple[str, tuple[Any, ...]]:
    """`column` is one of `values` (one or more), as driver SQL with its parameters.

    The driver keeps each distinct statement prepared (sqlite3: the last 128 per
    connection, ~225 bytes a placeholder). Lookups of as many ids as a claim or a recorded
    batch holds made a new statement for nearly every length, and `herald send` grew by
    their prepared copies: +14 MB of SQLite's memory over a send of 100k users. So on
    SQLite the list is padded with its last value to the next power of two: at most a
    dozen lengths, and a repeated value matches nothing more. On PostgreSQL it is one
    array parameter (= ANY), one statement whatever the count; psycopg parses
    placeholders in Python and caches statements of up to 50 only."""
    if conn.dialect.name == "postgresql":
        return f"{column} = ANY(%s)", (list(values),)
    size = 1 << (len(values) - 1).bit_length()
    padded = (*values, *[values[-1]] * (size - len(values)))
    return f"{column} IN ({', '.join(['?'] * size)})", padded


def writing(engine: Engine) -> AbstractContextManager[Connection]:
    """A write transaction. On SQLite it takes the write lock at BEGIN, not at its first
    write: two workers that both read first and then write would otherwise deadlock.
    Reads use plain transactions, which WAL lets run beside a writer."""
    return engine.execution_options(immediate=True).begin()


def _sqlite_begin(conn: Connection) -> None:
    immediate = conn.get_execution_options().get("immediate")
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # SQLAlchemy's "begin" event issues BEGIN
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=60000")
    cursor.execute("PRAGMA secure_delete=ON")  # erased personal data leaves no trace in free pages
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
