"""The daemon's outlook on each campaign: progress lines, and warnings when the deadline or
the bounce rate is at risk. I/O: database, log."""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import Engine

from engine.authoring.campaigns import LoadedCampaign
from engine.delivery.windows import SendTimes
from engine.evidence.status import campaign_status
from engine.logs import fields
from engine.store import campaigns as campaign_store
from engine.store.reporting import status_figures

log = logging.getLogger("herald.daemon")  # the daemon's one log stream
Stored = Callable[[str, str], Awaitable[LoadedCampaign | None]]


class Outlook:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.at_risk: set[str] = set()  # warned, and not on track since

    async def summarize(self, running: list[str], stored: Stored, now: float) -> None:
        """A progress line per running campaign; a warning, once, when one is at risk or
        has missed its deadline (projected through each recipient's send window)."""
        for campaign_id in running:
            row = await asyncio.to_thread(campaign_store.get, self.engine, campaign_id)
            if row is None:
                continue
            figures = await asyncio.to_thread(status_figures, self.engine, campaign_id, now)
            spec = await stored(campaign_id, row["spec_hash"])
            times = SendTimes(spec.campaign.schedule.send_window) if spec else None
            status = await asyncio.to_thread(
                campaign_status,
                row,
                **figures,
                now=now,
                next_allowed=times.next_allowed if times else None,
            )
            log.info(
                "progress",
                extra=fields(
                    campaign=campaign_id, rate=status["rate_per_second"], **status["deliveries"]
                ),
            )
            if status["outlook"] not in ("at risk", "missed"):
                self.at_risk.discard(campaign_id)
            elif campaign_id not in self.at_risk:  # once, until it is on track again
                self.at_risk.add(campaign_id)
                log.warning(
                    "missed: the deadline passed with notices still open"
                    if status["outlook"] == "missed"
                    else "at risk: projected completion is after the deadline",
                    extra=fields(
                        campaign=campaign_id,
                        projected=status["projected_completion"],
                        deadline=status["deadline"],
                    ),
                )

        for row in await asyncio.to_thread(campaign_store.all_campaigns, self.engine):
            if row["planned_at"] is not None:  # bounces come back after the sending is done
                await self._bounce_risk(row, stored, now)

    async def _bounce_risk(self, row: dict[str, Any], stored: Stored, now: float) -> None:
        """Warn once when the bounce rate passes delivery.max_bounce_rate."""
        campaign_id, key = row["id"], f"bounces:{row['id']}"
        figures = await asyncio.to_thread(status_figures, self.engine, campaign_id, now)
        rate = campaign_status(row, **figures, now=now)["bounce_rate"]
        loaded = await stored(campaign_id, row["spec_hash"])
        limit = loaded.campaign.delivery.max_bounce_rate if loaded else 0.05
        if rate is None or rate <= limit:
            self.at_risk.discard(key)
        elif key not in self.at_risk:
            self.at_risk.add(key)
            log.warning(
                "at risk: bounce rate above delivery.max_bounce_rate; consider herald pause",
                extra=fields(campaign=campaign_id, bounce_rate=rate, max_bounce_rate=limit),
            )
