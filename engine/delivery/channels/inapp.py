"""InAppTransport: the notification row is stored with the delivery's result. Pure.

The dispatcher writes `message.notification` in the same transaction as the status
`delivered` and its event, so an in-app notice exists exactly when the evidence says so.
"""

from engine.delivery.channels.base import Outgoing, Receipt, Transport
from engine.models import Channel


class InAppTransport(Transport):
    channel = Channel.INAPP

    async def send(self, message: Outgoing) -> Receipt:
        assert message.notification is not None, "in-app messages carry their row"
        return Receipt(f"inapp notification for delivery {message.delivery_id}")
