"""The transport contract. Pure declarations."""

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from engine.models import Channel


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message ready to hand over: bytes for email, a row for in-app."""

    delivery_id: int
    user_id: str
    channel: Channel
    message_id: str
    sender: str = ""  # envelope sender (email)
    recipient: str = ""  # envelope recipient (email)
    data: bytes = b""  # the whole message (email)
    notification: dict[str, Any] | None = None  # the inbox row (in-app)
    eight_bit: bool = False  # `data` has 8bit parts: BODY=8BITMIME, or mime.seven_bit()


@dataclass(frozen=True, slots=True)
class TlsInfo:
    """How a message crossed the network: the TLS version and cipher (both None in clear
    text), and whether the server's certificate and name were verified."""

    version: str | None
    cipher: str | None
    verified: bool


@dataclass(frozen=True, slots=True)
class Receipt:
    """Proof of hand-over: the server's reply (with its queue id), or where it was stored."""

    reply: str
    duplicate: bool = False  # the transport saw this Message-ID before
    tls: TlsInfo | None = None  # None: no network hop (outbox, in-app)


class Transport(ABC):
    """Delivers one message on one channel.

    `send` raises TemporaryDeliveryError (retry later: 4xx, timeouts, dropped
    connections) or PermanentDeliveryError (5xx, refused recipient) for problems with
    this message, TransportConfigError for problems with our own setup (credentials,
    TLS), and nothing else on purpose. Transports never retry; the dispatcher does.
    """

    channel: ClassVar[Channel]
    # Takes messages with 8bit parts (Outgoing.eight_bit) and makes them fit the receiver.
    # Otherwise messages come in 7-bit (quoted-printable or base64) only.
    takes_eight_bit: ClassVar[bool] = False
    # Hands over a whole claimed batch at once (send_many), with no per-message I/O.
    batches: ClassVar[bool] = False

    @abstractmethod
    async def send(self, message: Outgoing) -> Receipt:
        """Hand `message` over; return the receipt to keep as evidence."""

    async def send_many(self, messages: Sequence[Outgoing]) -> list[Receipt]:
        """Hand over `messages` in one go; raises as `send` does, for all of them."""
        return [await self.send(message) for message in messages]

    def in_doubt(self, delivery_id: int) -> bool:
        """Whether a send of `delivery_id` that was cancelled may have reached the receiver:
        its whole message went, and no answer came. A local store writes at once: never."""
        return False

    def check_verified_tls(self) -> None:  # noqa: B027 - a no-op for local transports
        """Raise TransportConfigError unless every message this transport hands over a
        network goes over TLS with a verified certificate. Transports that store the
        message locally (outbox, in-app) have no network hop and pass."""

    async def close(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Release connections; the transport may not be used afterwards."""
