"""From a report that came back to the delivery it names, and what it does there.
I/O: the database, through store.bounces.

A report is tied to a delivery by its signed return path (the envelope recipient, or the
Return-Path quoted from the original), else by the original's Message-ID. A return path
that fails its signature ties it to nothing, whatever else the report says. A report
that cannot be tied, or is not a bounce, changes nothing: it is counted and logged,
without any address.
"""

import hashlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from enum import StrEnum
from typing import Any

import yaml
from sqlalchemy import Engine

from engine.bounces.parsing import Bounce, Kind, parse_bounce
from engine.delivery.returnpath import is_return_path, read_return_path
from engine.delivery.tokens import Keys
from engine.evidence.redaction import redact_addresses
from engine.logs import fields
from engine.store import bounces as store
from engine.store.campaigns import all_campaigns, stored_files
from engine.store.deliveries import Fallback
from engine.store.events import iso

logger = logging.getLogger(__name__)


class Outcome(StrEnum):
    BOUNCED = "bounced"  # a sent email moved to bounced
    DELAYED = "delayed"  # a delay recorded as an event
    COMPLAINED = "complained"  # an abuse report recorded as an event
    UNCHANGED = "unchanged"  # tied to a delivery that it cannot change (again)
    EARLY = "early"  # came back before the send was recorded: to be read again later
    AUTOREPLY = "autoreply"
    UNRECOGNISED = "unrecognised"
    UNPARSEABLE = "unparseable"
    UNMATCHED = "unmatched"  # a bounce, but for no delivery we know
    FORGED = "forged"  # a return path whose signature does not match


_NOT_YET = ("pending", "sending", "deferred")
_IGNORED = {
    Kind.AUTOREPLY: Outcome.AUTOREPLY,
    Kind.UNRECOGNISED: Outcome.UNRECOGNISED,
    Kind.UNPARSEABLE: Outcome.UNPARSEABLE,
}


class BounceProcessor:
    """Applies reports to the store; `tally` counts the outcomes since it was made."""

    def __init__(self, engine: Engine, keys: Keys, clock: Callable[[], float] = time.time) -> None:
        self.engine, self.keys, self.clock = engine, keys, clock
        self.tally: Counter[str] = Counter()
        self._specs: dict[str, dict[str, Any]] = {}

    def process(self, data: bytes, envelope_recipients: Sequence[str] = ()) -> Outcome:
        """Apply one report. Safe to call twice with the same report."""
        outcome = self._process(data, envelope_recipients)
        self.tally[outcome.value] += 1
        return outcome

    def _process(self, data: bytes, envelope_recipients: Sequence[str]) -> Outcome:
        bounce = parse_bounce(data)
        if bounce.kind in _IGNORED:
            if bounce.kind is Kind.UNPARSEABLE:
                logger.info("unparseable report: %s", bounce.defect)
            return _IGNORED[bounce.kind]
        candidates = [*envelope_recipients] or [*bounce.addressed_to]
        candidates += bounce.return_paths
        delivery, matched_by = self._match(bounce, candidates)
        if matched_by == "forged":
            logger.warning("a %s report names a return path with a bad signature", bounce.kind)
            return Outcome.FORGED
        if delivery is None:
            logger.info("a %s report for no known delivery (%s)", bounce.kind, bounce.detector)
            return Outcome.UNMATCHED
        if bounce.kind is Kind.BOUNCED:
            return self._bounce(bounce, delivery, matched_by)
        kind = "delayed" if bounce.kind is Kind.DELAYED else "complained"
        event = self._event(kind, bounce, delivery, matched_by)
        identity = bounce.own_id or hashlib.sha256(data).hexdigest()
        key = hashlib.sha256(f"{kind}\0{delivery['id']}\0{identity}".encode()).hexdigest()
        if not store.record_once(self.engine, key, delivery, event, self.clock()):
            return Outcome.UNCHANGED
        return Outcome.DELAYED if kind == "delayed" else Outcome.COMPLAINED

    def _match(
        self, bounce: Bounce, candidates: Sequence[str]
    ) -> tuple[dict[str, Any] | None, str]:
        shaped = [a for a in candidates if is_return_path(a)]
        ids = [i for a in shaped if (i := read_return_path(a, self.keys)) is not None]
        if ids:
            return store.delivery_by_id(self.engine, ids[0]), "return-path"
        if shaped:
            return None, "forged"
        return store.delivery_by_message_id(self.engine, bounce.message_ids), "message-id"

    def _bounce(self, bounce: Bounce, delivery: dict[str, Any], matched_by: str) -> Outcome:
        if delivery["status"] in _NOT_YET and delivery["channel"] == "email":
            # A next hop that refuses at once bounces within milliseconds, before the
            # dispatcher's batch that records `sent` commits.
            return Outcome.EARLY
        if delivery["status"] != "sent" or delivery["channel"] != "email":
            return Outcome.UNCHANGED
        now = self.clock()
        spec = self._spec(delivery["campaign_id"])
        fallback = None
        if spec.get("fallback"):
            channels = [str(c) for c in spec.get("channels") or ()]
            fallback = Fallback(
                delivery["campaign_id"], channels, str(spec["fallback"]), now, iso(now)
            )
        event = self._event("bounced", bounce, delivery, matched_by)
        last_error = f"{bounce.status} {bounce.reason}"
        if not store.mark_bounced(self.engine, delivery, last_error, event, now, fallback):
            return Outcome.UNCHANGED
        logger.info(
            "delivery %s bounced (%s %s)",
            delivery["id"],
            bounce.status,
            bounce.reason,
            extra=fields(campaign=delivery["campaign_id"]),
        )
        return Outcome.BOUNCED

    def _event(
        self, kind: str, bounce: Bounce, delivery: dict[str, Any], matched_by: str
    ) -> dict[str, Any]:
        data: dict[str, Any] = {"detector": bounce.detector, "matched_by": matched_by}
        if bounce.status:
            data |= {"status": bounce.status, "reason": bounce.reason}
        if bounce.diagnostic:
            data["diagnostic"] = redact_addresses(bounce.diagnostic, self.keys.email_hash)
        return {
            "kind": kind,
            "at": iso(self.clock()),
            "delivery_id": delivery["id"],
            "user_id": delivery["user_id"],
            "channel": delivery["channel"],
            "data": data,
        }

    def _spec(self, campaign_id: str) -> dict[str, Any]:
        """The campaign file it was launched with (its channels and fallback)."""
        if campaign_id not in self._specs:
            self._specs[campaign_id] = campaign_spec(self.engine, campaign_id)
        return self._specs[campaign_id]


def campaign_spec(engine: Engine, campaign_id: str) -> dict[str, Any]:
    for file in stored_files(engine, campaign_id):
        if file.path.startswith("campaigns/") and file.path.endswith((".yaml", ".yml")):
            loaded = yaml.safe_load(file.content)
            return loaded if isinstance(loaded, dict) else {}
    return {}


def bounce_domains(engine: Engine) -> set[str]:
    """The domains of every launched campaign's sender.return_path."""
    domains = set()
    for row in all_campaigns(engine):
        sender = campaign_spec(engine, row["id"]).get("sender") or {}
        base = sender.get("return_path") if isinstance(sender, dict) else None
        if isinstance(base, str) and "@" in base:
            domains.add(base.rpartition("@")[2].lower())
    return domains


def export_rows(
    engine: Engine, keys: Keys, campaign_id: str | None = None
) -> Iterator[dict[str, Any]]:
    """Bounced addresses for a suppression list: user id, keyed hash, code, time."""
    for row in store.bounced(engine, campaign_id):
        code, _, reason = (row["last_error"] or "").partition(" ")
        yield {
            "campaign": row["campaign_id"],
            "user_id": row["user_id"],
            "address_hash": keys.email_hash(row["email"]) if row["email"] else None,
            "status": code or None,
            "reason": reason or None,
            "bounced_at": iso(row["bounced_at"]) if row["bounced_at"] is not None else None,
        }
