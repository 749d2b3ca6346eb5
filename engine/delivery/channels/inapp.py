"""InAppTransport: the notification row is stored with the delivery's result. Pure.

The dispatcher writes `message.notification` in the same transaction as the status
`delivered` and its event, so an in-app notice exists exactly when the evidence says so.
In-app deliveries are rows, so a claimed batch is handed over at once (`batches`) and
recorded with one executemany: no queue, sender or await per delivery.
"""

from collections.abc import Sequence

from engine.delivery.channels.base import Outgoing, Receipt, Transport
from engine.models import Channel


class InAppTransport(Transport):
    channel = Channel.INAPP
    batches = True

    async def send_many(self, messages: Sequence[Outgoing]) -> list[Receipt]:
        return [self._receipt(m) for m in messages]

    async def send(self, message: Outgoing) -> Receipt:
        return self._receipt(message)

    @staticmethod
    def _receipt(message: Outgoing) -> Receipt:
        assert message.notification is not None, "in-app messages carry their row"
        return Receipt(f"inapp notification for delivery {message.delivery_id}")
