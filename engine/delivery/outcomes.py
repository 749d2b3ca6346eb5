"""What an attempt did to a claimed delivery: its row's new columns and its event. Pure.

The dispatcher hands each claimed row to a transport; `Outcomes` turns the answer (a
receipt, a DeliveryError, or a send window that closed meanwhile) into a store Result:
the columns to set and the evidence event (docs/evidence.md) to append with them. It runs
once per delivery on the event loop, so it keeps to plain dict work.
"""

import random
from collections.abc import Callable
from typing import Any

from engine.authoring.campaigns import Campaign
from engine.delivery.channels.base import Outgoing, Receipt
from engine.delivery.packing import content_sha256
from engine.delivery.tokens import Keys
from engine.delivery.windows import SendTimes
from engine.errors import DeliveryError, UnreachableError
from engine.evidence.redaction import redact_addresses, strip_addresses
from engine.models import Channel, RenderedMessage
from engine.statuses import CONFIRMATION, DeliveryStatus, RetryPolicy
from engine.store.events import iso
from engine.store.results import Result

Sent = tuple[dict[str, Any], RenderedMessage, Outgoing]  # a claimed row, as packed
_CHANNELS = {c.value: c for c in Channel}  # Channel(value) costs ~1 µs a call
_DONE_IN = {  # status and its value (Enum.value costs ~0.5 µs) of a message handed over
    Channel.EMAIL: (DeliveryStatus.SENT, DeliveryStatus.SENT.value),
    Channel.INAPP: (DeliveryStatus.DELIVERED, DeliveryStatus.DELIVERED.value),
}


class Outcomes:
    def __init__(self, campaign: Campaign, keys: Keys, clock: Callable[[], float]) -> None:
        self.keys, self.clock = keys, clock
        self.retry = RetryPolicy(
            campaign.delivery.retry_base_seconds, campaign.delivery.max_attempts
        )
        self.times = SendTimes(campaign.schedule.send_window)
        self.rng = random.Random()
        self._iso_ms, self._iso = -1, ""  # _now_iso's last millisecond

    def allowed(self, row: dict[str, Any], at: float) -> float:
        """The first instant from `at` inside the recipient's send window. A confirmation
        answers the user's own request: it goes at once."""
        if row["message"] == CONFIRMATION:
            return at
        channel = _CHANNELS[row["channel"]]
        return self.times.next_allowed(at, channel, row["timezone"], row["country"])

    def reschedule(self, row: dict[str, Any], at: float) -> Result:
        """Not an attempt: the send window closed while it waited; it goes at `at`."""
        attempts = row["attempts"] - 1
        status = DeliveryStatus.DEFERRED if attempts else DeliveryStatus.PENDING
        values = {"status": status.value, "attempts": attempts, "next_attempt_at": at}
        return Result(row["id"], row["user_id"], status, values, None)

    def success(self, sent: Sent, receipt: Receipt, now: float, at: str) -> Result:
        """A packed row handed over at `now`; `at` is iso(now)."""
        row, message, outgoing = sent
        status, kind = _DONE_IN[outgoing.channel]
        digest = content_sha256(message)
        reply = receipt.reply
        values = {
            "status": kind,
            "attempts": row["attempts"],
            "next_attempt_at": row["next_attempt_at"],
            "message_id": outgoing.message_id,
            "content_sha256": digest,
            "reply": strip_addresses(reply) if "@" in reply else reply,  # as _redacted
            "sent_at": now,
        }
        data: dict[str, Any] = {
            "content_sha256": digest,
            "message_id": outgoing.message_id,
            "reply": self._redacted(reply),
        }
        if receipt.tls is not None:  # crossed a network: how, as evidence
            data["tls_version"] = receipt.tls.version
            data["tls_cipher"] = receipt.tls.cipher
            data["tls_verified"] = receipt.tls.verified
        if row["interrupted"] or receipt.duplicate:
            data["possible_duplicate"] = True
        event = self._event(row, kind, data, at)
        return Result(row["id"], row["user_id"], status, values, event, outgoing.notification)

    def failure(
        self, row: dict[str, Any], error: DeliveryError, message: RenderedMessage | None
    ) -> Result:
        """A failed attempt: deferred to a retry within the send window, or failed. One
        that never reached a server about the recipient (our relay unreachable) is not
        counted against them: retried as if it had not been made, and its event says so."""
        now = self.clock()
        attempts = row["attempts"]
        if isinstance(error, UnreachableError):
            attempts = max(0, attempts - 1)  # the claim counted it
        retry_at = (
            self.retry.next_attempt(max(1, attempts), now, self.rng) if error.temporary else None
        )
        if retry_at is not None:
            retry_at = self.allowed(row, retry_at)
        status = DeliveryStatus.DEFERRED if retry_at is not None else DeliveryStatus.FAILED
        reason = error.reason
        if error.temporary and retry_at is None:
            reason = f"gave up after {attempts} attempts: {reason}"
        values = {
            "status": status.value,
            "attempts": attempts,
            "next_attempt_at": retry_at or row["next_attempt_at"],
            "last_error": strip_addresses(reason),
            "content_sha256": content_sha256(message) if message else None,
        }
        data: dict[str, Any] = {"error": self._redacted(reason)}
        if retry_at is not None:
            data["retry_at"] = iso(retry_at)
        if error.maybe_delivered:
            data["possibly_delivered"] = True
        if isinstance(error, UnreachableError):
            data["relay_unreachable"] = True  # not counted: `attempt` comes again
        event = self._event(row, status.value, data)
        return Result(
            row["id"], row["user_id"], status, values, event, maybe_delivered=error.maybe_delivered
        )

    def _redacted(self, text: str | None) -> str | None:
        """Server replies quote addresses; the evidence keeps their keyed hash instead."""
        if text is None or "@" not in text:  # every address has an @: skip the regex
            return text
        return redact_addresses(text, self.keys.email_hash)

    def _now_iso(self) -> str:
        """iso(now), reused within a millisecond: iso() is ~5 µs, a batch makes hundreds."""
        ms = int(self.clock() * 1000)
        if ms != self._iso_ms:
            self._iso_ms, self._iso = ms, iso(ms / 1000)
        return self._iso

    def _event(
        self, row: dict[str, Any], kind: str, data: dict[str, Any], at: str | None = None
    ) -> dict[str, Any]:
        """The event of an attempt on `row`: `data` with what every attempt carries."""
        data |= {k: row[k] for k in ("locale", "locale_source", "fell_back")}
        data["attempt"] = row["attempts"]
        if row["message"] == CONFIRMATION:
            data["message"] = CONFIRMATION
        return {
            "kind": kind,
            "at": self._now_iso() if at is None else at,
            "delivery_id": row["id"],
            "user_id": row["user_id"],
            "channel": row["channel"],
            "data": data,
        }
