"""The daemon's view of campaigns/: which files to schedule, which to refuse. I/O: files, DB.

A new or changed file is validated in full (every locale rendered) before it is scheduled;
a file that fails is refused with every problem, and the others go on. Once a campaign has
started its files are fixed: a change is refused, naming what changed. Unchanged files cost
one hash per scan.
"""

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine

from engine.authoring.campaigns import LoadedCampaign, load_campaign
from engine.authoring.specs import changes, spec_files, spec_hash
from engine.authoring.validation import validate
from engine.errors import CampaignError
from engine.logs import fields
from engine.store import campaigns as campaign_store

log = logging.getLogger("herald.daemon")


@dataclass
class _Seen:
    """What the scan last made of one campaign file."""

    digest: str  # spec hash, or the refusal's text
    loaded: LoadedCampaign | None = None  # validated and scheduled, not started


class CampaignFiles:
    """Scans one folder; calls `schedule(loaded, spec_hash)` for a file to start at its
    schedule.start and `unschedule(campaign_id, why)` for one that no longer should."""

    def __init__(
        self,
        engine: Engine,
        folder: Path,
        schedule: Callable[[LoadedCampaign, str], None],
        unschedule: Callable[[str, str], None],
    ) -> None:
        self.engine, self.folder = engine, folder
        self.schedule, self.unschedule = schedule, unschedule
        self.seen: dict[Path, _Seen] = {}

    async def scan(self, stopping: asyncio.Event) -> None:
        """Look at every campaign file; only new or changed ones cost a validation."""
        paths = sorted(p for p in self.folder.glob("*.y*ml") if p.suffix in (".yaml", ".yml"))
        for path in paths:
            if stopping.is_set():
                return
            await self._look_at(path)
        for path in set(self.seen) - set(paths):
            seen = self.seen.pop(path)
            if seen.loaded:  # not started (a started campaign runs on from its stored files)
                self.unschedule(seen.loaded.campaign.id, "its file was removed")
                await asyncio.to_thread(
                    campaign_store.refuse,
                    self.engine,
                    seen.loaded.campaign.id,
                    f"{path} was removed",
                    time.time(),
                )

    async def _look_at(self, path: Path) -> None:
        campaign_id = path.stem
        try:
            loaded = await asyncio.to_thread(load_campaign, path)
            files = await asyncio.to_thread(spec_files, loaded)
        except CampaignError as exc:
            await self._refuse(path, campaign_id, [str(p) for p in exc.problems])
            return
        except OSError as exc:
            await self._refuse(path, campaign_id, [f"{path}: {exc}"])
            return
        digest = spec_hash(files)
        seen = self.seen.get(path)
        if seen and seen.digest == digest:
            return
        row = await asyncio.to_thread(campaign_store.get, self.engine, campaign_id)
        if row is not None and row["planned_at"] is not None:
            self.seen[path] = _Seen(digest)
            if digest != row["spec_hash"]:
                stored = await asyncio.to_thread(
                    campaign_store.stored_hashes, self.engine, campaign_id
                )
                what = "; ".join(changes(stored, files)[:10])
                problem = (
                    f"{path} changed after the campaign started ({what}); refused: the "
                    "running spec goes on. Launch a corrected campaign under a new id."
                )
                log.warning("refused change", extra=fields(campaign=campaign_id, changes=what))
                await asyncio.to_thread(
                    campaign_store.refuse, self.engine, campaign_id, problem, time.time()
                )
            return
        report = await asyncio.to_thread(validate, path)
        if report.errors:
            await self._refuse(path, campaign_id, [str(p) for p in report.errors])
            return
        for warning in report.warnings:
            log.warning(str(warning), extra=fields(campaign=campaign_id))
        self.seen[path] = _Seen(digest, loaded)
        c = loaded.campaign
        scheduled = await asyncio.to_thread(
            campaign_store.schedule, self.engine, c.record, digest, time.time()
        )
        if not scheduled:  # another daemon started it meanwhile; the next scan sees that
            self.seen.pop(path, None)
            return
        self.schedule(loaded, digest)

    async def _refuse(self, path: Path, campaign_id: str, problems: list[str]) -> None:
        digest = "refused:" + "\n".join(problems)
        seen = self.seen.get(path)
        if seen and seen.digest == digest:
            return
        if seen and seen.loaded:
            self.unschedule(campaign_id, "its file no longer validates")
        self.seen[path] = _Seen(digest)
        log.error(
            "refused campaign file",
            extra=fields(campaign=campaign_id, file=str(path), problems=problems),
        )
        await asyncio.to_thread(
            campaign_store.refuse, self.engine, campaign_id, "\n".join(problems), time.time()
        )
