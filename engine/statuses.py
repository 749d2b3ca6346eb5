"""Delivery statuses and the retry rule. Pure: no I/O."""

import random
from dataclasses import dataclass
from enum import StrEnum


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    SENDING = "sending"  # claimed by a worker under a lease
    SENT = "sent"  # email accepted by the SMTP server (or written to the outbox)
    DELIVERED = "delivered"  # in-app notification stored
    DEFERRED = "deferred"  # transient failure, retried at next_attempt_at
    FAILED = "failed"  # permanent
    BOUNCED = "bounced"  # was sent, then a permanent DSN came back (final)


# What a delivery carries: the campaign's notice, or the confirmation of an objection.
NOTICE, CONFIRMATION = "notice", "confirmation"

FINAL = frozenset(
    {DeliveryStatus.SENT, DeliveryStatus.DELIVERED, DeliveryStatus.FAILED, DeliveryStatus.BOUNCED}
)
# Final and not notified: a user reached through none of these was never told.
UNREACHED = frozenset({DeliveryStatus.FAILED, DeliveryStatus.BOUNCED})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    base_seconds: float = 60.0
    max_attempts: int = 8
    cap_seconds: float = 6 * 3600.0

    def next_attempt(self, attempts: int, now: float, rng: random.Random) -> float | None:
        """When to try again after `attempts` failed tries; None means give up.

        Exponential backoff with full jitter between half and the whole delay, so
        that deferred deliveries do not all come back in the same second.
        """
        if attempts >= self.max_attempts:
            return None
        delay = min(self.cap_seconds, self.base_seconds * 2.0 ** (attempts - 1))
        return now + delay * float(rng.uniform(0.5, 1.0))
