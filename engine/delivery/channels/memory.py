"""MemoryTransport: keeps messages in a list. For tests and dry runs. Pure."""

from engine.delivery.channels.base import Outgoing, Receipt, Transport
from engine.errors import DeliveryError
from engine.models import Channel


class MemoryTransport(Transport):
    def __init__(
        self, channel: Channel = Channel.EMAIL, failures: dict[str, DeliveryError] | None = None
    ) -> None:
        self.channel = channel  # type: ignore[misc]  # one class serves either channel
        self.sent: list[Outgoing] = []
        self.failures = failures or {}  # user id -> the error to raise for them

    async def send(self, message: Outgoing) -> Receipt:
        if message.user_id in self.failures:
            raise self.failures[message.user_id]
        duplicate = any(m.message_id == message.message_id for m in self.sent)
        self.sent.append(message)
        return Receipt(f"memory {len(self.sent)}", duplicate)
