"""Objecting: from a token to a recorded objection. I/O: via the store and spec files.

A token is genuine, current and known, or it is nothing: the caller cannot tell a
tampered token from an unknown or expired one, so neither can whoever holds it.
The campaign is read as it was launched (its stored files), like the daemon does.
"""

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from engine.authoring.campaigns import LoadedCampaign
from engine.authoring.specs import restore, spec_folder
from engine.delivery.tokens import Keys
from engine.delivery.windows import local_date
from engine.errors import EngineError
from engine.store import campaigns as campaign_store
from engine.store import objections as store
from engine.store.objections import Notice, Recorded

MAX_TOKEN = 200  # ours are ~50 characters; anything longer is not worth verifying
MAX_REASON = 10_000  # characters kept of a reason; a longer one is cut, never refused


@dataclass(frozen=True)
class Target:
    """A genuine token's notice, with the campaign as launched."""

    loaded: LoadedCampaign
    notice: Notice

    @property
    def purpose(self) -> str:
        return self.loaded.campaign.policy.purpose

    def local_date(self, at: float) -> dt.date:
        return local_date(at, self.notice.timezone, self.notice.country)


class Objections:
    def __init__(
        self, engine: Engine, keys: Keys, var: Path, clock: Callable[[], float] = time.time
    ) -> None:
        self.engine, self.keys, self.var, self.clock = engine, keys, var, clock
        self._specs: dict[str, LoadedCampaign] = {}

    def resolve(self, token: str) -> Target | None:
        """The notice behind `token`; None if it is tampered, foreign, unknown or expired."""
        opened = self.keys.open_token(token) if len(token) <= MAX_TOKEN else None
        if opened is None:
            return None
        token_id, issued = opened
        notice = store.find_notice(self.engine, token_id)
        loaded = self.launched(notice.campaign_id) if notice else None
        if notice is None or loaded is None:
            return None
        ttl = loaded.campaign.objection.token_ttl_days
        if ttl is not None and (issued is None or self.clock() - issued > ttl * 86400):
            return None
        return Target(loaded, notice)

    def launched(self, campaign_id: str) -> LoadedCampaign | None:
        """The campaign as it was launched (read once: a launched spec never changes)."""
        if campaign_id not in self._specs:
            row = campaign_store.get(self.engine, campaign_id)
            files = campaign_store.stored_files(self.engine, campaign_id) if row else []
            if not row or not files:
                return None
            try:
                folder = spec_folder(self.var, campaign_id, row["spec_hash"])
                self._specs[campaign_id] = restore(campaign_id, files, folder)
            except (EngineError, OSError):
                return None
        return self._specs[campaign_id]

    def on_record(self, target: Target) -> dict[str, Any] | None:
        """The user's objection to this purpose, from this or an earlier campaign."""
        return store.objection_of(self.engine, target.notice.user_id, target.purpose)

    def object(self, target: Target, locale: str, reason: str | None, via: str) -> Recorded:
        """Record the objection once; a repeat returns the first."""
        reason = (reason or "").replace("\r\n", "\n").strip()[:MAX_REASON] or None
        return store.record_objection(
            self.engine, target.notice, target.purpose, locale, reason, via, self.clock()
        )
