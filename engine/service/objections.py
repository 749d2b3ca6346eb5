"""Objecting: from a token to a recorded objection. I/O: via the store and spec files.

A token is genuine, current and known, or it is nothing: the caller cannot tell a
tampered token from an unknown or expired one, so neither can whoever holds it.
The campaign is read as it was launched (its stored files), like the daemon does; the
restored files are checked against the stored ones once per process, and restored
again if they differ.
"""

import datetime as dt
import hashlib
import logging
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
from engine.models import SpecFile
from engine.service.inputs import clean_reason, valid_token
from engine.store import campaigns as campaign_store
from engine.store import objections as store
from engine.store.objections import Notice, Recorded

log = logging.getLogger("herald.serve")


class UnavailableError(EngineError):
    """A genuine token whose campaign's files cannot be restored right now."""

    def __init__(self, campaign_id: str, problem: str) -> None:
        super().__init__(f"campaign {campaign_id}: {problem}")
        self.campaign_id = campaign_id


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
        """The notice behind `token`; None if it is tampered, foreign, unknown or expired.
        Raises UnavailableError if its campaign's files cannot be restored."""
        opened = self.keys.open_token(token) if valid_token(token) else None
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
        """The campaign as it was launched (read once: a launched spec never changes);
        None if there is none. Raises UnavailableError if its files cannot be restored."""
        if campaign_id not in self._specs:
            row = campaign_store.get(self.engine, campaign_id)
            files = campaign_store.stored_files(self.engine, campaign_id) if row else []
            if not row or not files:
                return None
            folder = spec_folder(self.var, campaign_id, row["spec_hash"])
            try:
                self._specs[campaign_id] = _restored(campaign_id, files, folder)
            except (EngineError, OSError) as exc:
                log.error("cannot restore the files of campaign %s: %s", campaign_id, exc)
                raise UnavailableError(campaign_id, str(exc)) from exc
        return self._specs[campaign_id]

    def forget(self, campaign_id: str) -> None:
        """Check (and restore) the campaign's files again on next use."""
        self._specs.pop(campaign_id, None)

    def on_record(self, target: Target) -> dict[str, Any] | None:
        """The user's objection to this purpose, from this or an earlier campaign."""
        return store.objection_of(self.engine, target.notice.user_id, target.purpose)

    def object(self, target: Target, locale: str, reason: str | None, via: str) -> Recorded:
        """Record the objection once; a repeat returns the first."""
        return store.record_objection(
            self.engine,
            target.notice,
            target.purpose,
            locale,
            clean_reason(reason),
            via,
            self.clock(),
        )


def _restored(campaign_id: str, files: list[SpecFile], folder: Path) -> LoadedCampaign:
    """Restore the stored files under `folder` unless every one is there unchanged.
    Raises OSError naming the first file that is still wrong after restoring."""
    if _damaged(files, folder) is not None:
        (folder / ".complete").unlink(missing_ok=True)
        loaded = restore(campaign_id, files, folder, reading=True)
        wrong = _damaged(files, folder)
        if wrong is not None:
            raise OSError(f"{wrong}: differs from the file stored with the campaign")
        return loaded
    return restore(campaign_id, files, folder, reading=True)


def _damaged(files: list[SpecFile], folder: Path) -> Path | None:
    """The first file under `folder` that is missing or differs from its stored copy."""
    for file in files:
        path = folder / file.path
        try:
            if hashlib.sha256(path.read_bytes()).hexdigest() == file.sha256:
                continue
        except OSError:
            pass
        return path
    return None
