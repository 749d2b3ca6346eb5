"""Schema steps beyond create_all: the v0 evidence tables retired, append-only triggers,
indexes retired or added. I/O: the database.

A database written before evidence format v1 keeps its old hash-chained events, renamed
`event_v0` and `chain_head_v0`, so `herald evidence verify` can still check them as v0;
new events go to the v1 tables. The triggers refuse UPDATE and DELETE on events. They stop
mistakes and careless scripts, not a determined administrator, who can drop them: the
signed checkpoints and their off-host copies are what catch that.
"""

from sqlalchemy import Engine, inspect

_SQLITE_TRIGGERS = [
    f"CREATE TRIGGER IF NOT EXISTS event_no_{verb.lower()} BEFORE {verb} ON event "
    "BEGIN SELECT RAISE(ABORT, 'events are append-only'); END"
    for verb in ("UPDATE", "DELETE")
]
_POSTGRES_TRIGGER = [
    (
        "CREATE OR REPLACE FUNCTION herald_append_only() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN RAISE EXCEPTION 'events are append-only'; END $$"
    ),
    "DROP TRIGGER IF EXISTS event_append_only ON event",
    (
        "CREATE TRIGGER event_append_only BEFORE UPDATE OR DELETE ON event "
        "FOR EACH ROW EXECUTE FUNCTION herald_append_only()"
    ),
]


def retire_v0(engine: Engine) -> None:
    """Rename the v0 event tables out of the way (before create_all makes the v1 ones)."""
    found = inspect(engine)
    if "event" not in found.get_table_names():
        return
    if "prev_hash" not in {c["name"] for c in found.get_columns("event")}:
        return
    with engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE event RENAME TO event_v0")
        conn.exec_driver_sql("ALTER TABLE chain_head RENAME TO chain_head_v0")
        if engine.dialect.name == "postgresql":  # index and sequence names are per schema
            for kind, old in (
                ("INDEX", "event_pkey"),
                ("INDEX", "event_campaign_id_seq_key"),
                ("SEQUENCE", "event_id_seq"),
                ("INDEX", "chain_head_pkey"),
            ):
                conn.exec_driver_sql(f"ALTER {kind} IF EXISTS {old} RENAME TO v0_{old}")


def append_only(engine: Engine) -> None:
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql("SELECT pg_advisory_xact_lock(4242)")  # one creator at a time
            exists = conn.exec_driver_sql(
                "SELECT 1 FROM pg_trigger WHERE tgname = 'event_append_only'"
            ).first()
            if not exists:
                for statement in _POSTGRES_TRIGGER:
                    conn.exec_driver_sql(statement)
        else:
            for statement in _SQLITE_TRIGGERS:
                conn.exec_driver_sql(statement)


# Indexes an earlier version made and this one no longer keeps up (see tables.py), by table.
RETIRED_INDEXES = {"event": ("ix_event_subject",), "delivery": ("ix_delivery_message_id",)}
# Partial indexes, in the SQL both databases speak (as Index objects, their dialect options
# would import the PostgreSQL dialect into every command on SQLite). Bounces find an email
# by its Message-ID (without a VERP): only emails are indexed, because the keys are random
# and each entry rewrites a page of the index, which in-app deliveries paid for nothing
# (an in-app send, one worker, alternated: ~6-8k -> ~10-11k deliveries/s).
PARTIAL_INDEXES = {
    "delivery": {
        "ix_delivery_email_message_id": (
            "CREATE INDEX ix_delivery_email_message_id ON delivery (message_id) "
            "WHERE channel = 'email'"
        )
    }
}


def update_indexes(engine: Engine) -> None:
    """Drop the retired indexes and create the partial ones a database lacks: once per
    database, later opens find nothing to do. Only the tables named above are read."""
    inspector = inspect(engine)
    existing = set(inspector.get_table_names())
    statements: list[str] = []
    for table in sorted((RETIRED_INDEXES.keys() | PARTIAL_INDEXES.keys()) & existing):
        found = {ix["name"] for ix in inspector.get_indexes(table)}
        statements += [
            f"DROP INDEX IF EXISTS {name}"
            for name in RETIRED_INDEXES.get(table, ())
            if name in found
        ]
        partial = PARTIAL_INDEXES.get(table, {})
        statements += [ddl for name, ddl in partial.items() if name not in found]
    if statements:
        with engine.begin() as conn:
            for statement in statements:
                conn.exec_driver_sql(statement)
