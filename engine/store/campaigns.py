"""The campaign table and the files each campaign was launched with. I/O: the database.

Lifecycle written here: scheduled (known, not started) ▶ planning ▶ planned; or refused
(its file does not validate). Once planning has begun the spec is fixed: `launch` stores
the files and never replaces them.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, select, update

from engine.models import CampaignRecord, SpecFile
from engine.store import executemany, upsert_into, writing
from engine.store.events import append_events, iso
from engine.store.tables import CampaignRow
from engine.store.tables import SpecFile as SpecFileRow

_campaign = CampaignRow.__table__  # type: ignore[attr-defined]
_file = SpecFileRow.__table__  # type: ignore[attr-defined]
_INSERT_FILE = (
    "INSERT INTO spec_file (campaign_id, path, sha256, content) "
    "VALUES (:campaign_id, :path, :sha256, :content)"
)


@dataclass(frozen=True)
class Launch:
    started: bool  # planning had already begun before this call
    same_spec: bool  # the files given are those the campaign was launched with


def _schedule_values(c: CampaignRecord) -> dict[str, Any]:
    return {
        "title": c.title,
        "start_at": c.start_at,
        "deadline_at": c.deadline_at,
        "rate_per_second": c.rate_per_second,
        "reason_retention_days": c.reason_retention_days,
    }


def schedule(engine: Engine, c: CampaignRecord, spec_hash: str, now: float) -> bool:
    """Record a campaign found on disk, or its new version while it has not started.

    Returns False (and changes nothing) when it has started already. Each write says
    "not started" in its own condition: on PostgreSQL another daemon may launch the
    campaign between a read and a write here (SQLite's write lock rules that out), and
    a check made only by the read set a launched campaign back to "scheduled"; a later
    plan then took it for planned, and `herald status` said "done" with nothing sent."""
    values = {**_schedule_values(c), "spec_hash": spec_hash, "state": "scheduled"}
    with writing(engine) as conn:
        inserted = _insert_new(conn, id=c.id, created_at=now, **values)
        if inserted:
            return True
        changed = conn.execute(
            update(_campaign)
            .where(_campaign.c.id == c.id, _campaign.c.planned_at.is_(None))
            .values(problem=None, **values)
        ).rowcount
        return bool(changed)


def _insert_new(conn: Connection, **values: Any) -> bool:
    """Insert the campaign's row unless it exists (ON CONFLICT DO NOTHING); whether it did.
    Asked with RETURNING: psycopg's rowcount for it is -1."""
    inserted = conn.execute(
        upsert_into(conn, _campaign)
        .values(**values)
        .on_conflict_do_nothing(index_elements=[_campaign.c.id])
        .returning(_campaign.c.id)
    ).first()
    return inserted is not None


def launch(
    engine: Engine,
    c: CampaignRecord,
    spec_hash: str,
    files: Sequence[SpecFile],
    now: float,
    started: dict[str, Any],
) -> Launch:
    """Fix the campaign's spec as it begins planning: store its files and log `started`
    (with `started` as its data), once."""
    values = {
        **_schedule_values(c),
        "spec_hash": spec_hash,
        "state": "planning",
        "planned_at": now,
        "problem": None,
    }
    with writing(engine) as conn:
        # Launched by these statements or by someone else, never by both (see schedule())
        launched = _insert_new(conn, id=c.id, created_at=now, **values)
        if not launched:
            launched = (
                conn.execute(
                    update(_campaign)
                    .where(_campaign.c.id == c.id, _campaign.c.planned_at.is_(None))
                    .values(**values)
                ).rowcount
                > 0
            )
        if not launched:
            row = conn.execute(select(_campaign.c.spec_hash).where(_campaign.c.id == c.id)).one()
            return Launch(started=True, same_spec=row.spec_hash == spec_hash)
        conn.execute(_file.delete().where(_file.c.campaign_id == c.id))
        executemany(
            conn,
            _INSERT_FILE,
            [
                {"campaign_id": c.id, "path": f.path, "sha256": f.sha256, "content": f.content}
                for f in files
            ],
        )
        append_events(conn, c.id, [{"kind": "started", "at": iso(now), "data": started}])
        return Launch(started=False, same_spec=True)


def set_state(engine: Engine, campaign_id: str, state: str) -> None:
    with writing(engine) as conn:
        conn.execute(update(_campaign).where(_campaign.c.id == campaign_id).values(state=state))


def refuse(engine: Engine, campaign_id: str, problem: str, now: float) -> None:
    """Note why a campaign file was refused. A started campaign keeps its state and runs on."""
    with writing(engine) as conn:
        inserted = _insert_new(
            conn,
            id=campaign_id,
            title=campaign_id,
            spec_hash="",
            state="refused",
            created_at=now,
            problem=problem,
        )
        if inserted:
            return
        conn.execute(update(_campaign).where(_campaign.c.id == campaign_id).values(problem=problem))
        conn.execute(  # a campaign launched meanwhile keeps its state (see schedule())
            update(_campaign)
            .where(_campaign.c.id == campaign_id, _campaign.c.planned_at.is_(None))
            .values(state="refused")
        )


def set_paused(engine: Engine, campaign_id: str, paused: bool, now: float, by: str) -> bool:
    """Pause or resume, recording the event. False when it was already so."""
    with writing(engine) as conn:
        changed = conn.execute(
            update(_campaign)
            .where(_campaign.c.id == campaign_id, _campaign.c.paused != paused)
            .values(paused=paused)
        ).rowcount
        if changed:
            kind = "paused" if paused else "resumed"
            append_events(conn, campaign_id, [{"kind": kind, "at": iso(now), "data": {"by": by}}])
        return bool(changed)


def get(engine: Engine, campaign_id: str) -> dict[str, Any] | None:
    with engine.connect() as conn:
        row = conn.execute(select(_campaign).where(_campaign.c.id == campaign_id)).mappings()
        first = row.first()
    return dict(first) if first else None


def all_campaigns(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(select(_campaign).order_by(_campaign.c.id)).mappings()
        return [dict(r) for r in rows]


def stored_spec(engine: Engine, campaign_id: str) -> str | None:
    """The spec hash of a launched campaign; None if it has not started."""
    row = get(engine, campaign_id)
    return row["spec_hash"] if row and row["planned_at"] is not None else None


def stored_files(engine: Engine, campaign_id: str) -> list[SpecFile]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(_file.c.path, _file.c.content)
            .where(_file.c.campaign_id == campaign_id)
            .order_by(_file.c.path)
        )
        return [SpecFile(r.path, bytes(r.content)) for r in rows]


def stored_hashes(engine: Engine, campaign_id: str) -> dict[str, str]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(_file.c.path, _file.c.sha256).where(_file.c.campaign_id == campaign_id)
        )
        return {r.path: r.sha256 for r in rows}
