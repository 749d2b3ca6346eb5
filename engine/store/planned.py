"""Inserting planned deliveries, many rows to a statement. I/O: the database."""

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection

from engine.statuses import NOTICE

_PLANNED = (
    "campaign_id user_id channel message country locale locale_source fell_back is_fallback "
    "token_id status attempts next_attempt_at interrupted"
).split()
_PLANNED_DEFAULTS = {"message": NOTICE, "is_fallback": False, "attempts": 0, "interrupted": 0}
_PLANNED_PER_STATEMENT = 1000  # rows: 14,000 parameters, under SQLite's 32,766
_PG_TYPES = {"fell_back": "boolean", "is_fallback": "boolean", "attempts": "integer",
             "interrupted": "integer", "next_attempt_at": "double precision"}  # fmt: skip
# PostgreSQL takes each column as one array: psycopg parses a statement's placeholders in
# Python, and a statement of 14,000 of them, too long for its cache, was more than half of
# a plan's client CPU; this one has 14, and is parsed once.
_PG_INSERT = (
    f"INSERT INTO delivery ({', '.join(_PLANNED)}) SELECT * FROM unnest("
    + ", ".join(f"%s::{_PG_TYPES.get(c, 'text')}[]" for c in _PLANNED)
    + ") ON CONFLICT (campaign_id, user_id, channel, message) DO NOTHING"
    " RETURNING id, user_id, channel"
)


def insert_planned(conn: Connection, rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Insert deliveries that do not exist yet; returns those inserted (with their ids).

    One INSERT ... ON CONFLICT DO NOTHING RETURNING per 1,000 rows, straight through the
    driver (SQLAlchemy's insert-many-values path spent more on each parameter than SQLite
    spends on the row: ~17% of a plan): multi-row VALUES on SQLite, a column an array on
    PostgreSQL (_PG_INSERT)."""
    inserted: dict[tuple[str, str], int] = {}
    for first in range(0, len(rows), _PLANNED_PER_STATEMENT):
        chunk = rows[first : first + _PLANNED_PER_STATEMENT]
        if conn.dialect.name == "postgresql":
            columns = [[row.get(c, _PLANNED_DEFAULTS.get(c)) for row in chunk] for c in _PLANNED]
            found = conn.exec_driver_sql(_PG_INSERT, tuple(columns))
        else:
            one = "(" + ", ".join(["?"] * len(_PLANNED)) + ")"
            sql = (
                f"INSERT INTO delivery ({', '.join(_PLANNED)}) VALUES "
                + ", ".join([one] * len(chunk))
                + " ON CONFLICT (campaign_id, user_id, channel, message) DO NOTHING"
                " RETURNING id, user_id, channel"
            )
            params = [row.get(c, _PLANNED_DEFAULTS.get(c)) for row in chunk for c in _PLANNED]
            found = conn.exec_driver_sql(sql, tuple(params))
        for id_, user_id, channel in found:
            inserted[(user_id, channel)] = id_
    return [
        {**row, "id": inserted[(row["user_id"], row["channel"])]}
        for row in rows
        if (row["user_id"], row["channel"]) in inserted
    ]
