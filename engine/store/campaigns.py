"""The campaign table. I/O: the database."""

from sqlalchemy import Engine, select

from engine.store import writing
from engine.store.tables import CampaignRow

_campaign = CampaignRow.__table__  # type: ignore[attr-defined]


def register(engine: Engine, campaign_id: str, title: str, spec_hash: str, now: float) -> bool:
    """Record the campaign on its first plan. False when its files changed since then."""
    with writing(engine) as conn:
        stored = conn.execute(
            select(_campaign.c.spec_hash).where(_campaign.c.id == campaign_id)
        ).scalar()
        if stored is None:
            conn.execute(
                _campaign.insert().values(
                    id=campaign_id,
                    title=title,
                    spec_hash=spec_hash,
                    state="planned",
                    created_at=now,
                    planned_at=now,
                )
            )
            return True
        return bool(stored == spec_hash)


def stored_spec(engine: Engine, campaign_id: str) -> str | None:
    with engine.connect() as conn:
        value = conn.execute(
            select(_campaign.c.spec_hash).where(_campaign.c.id == campaign_id)
        ).scalar()
    return None if value is None else str(value)
