"""The transport contract, over every implementation: a receipt back, typed errors only."""

import asyncio

import pytest

from engine.delivery.channels.base import Outgoing, Transport
from engine.delivery.channels.inapp import InAppTransport
from engine.delivery.channels.memory import MemoryTransport
from engine.delivery.channels.outbox import OutboxTransport
from engine.delivery.channels.smtp import SmtpSettings, SmtpTransport
from engine.errors import (
    DeliveryError,
    PermanentDeliveryError,
    TemporaryDeliveryError,
    TransportConfigError,
)
from engine.models import Channel
from tests.smtp import Mailbox, serve

MAIL = (
    b"From: a@example.com\r\nTo: b@example.com\r\nSubject: hi\r\n"
    b"Message-ID: <m1@example.com>\r\n\r\nbody\r\n"
)


def _message(channel: Channel = Channel.EMAIL) -> Outgoing:
    if channel is Channel.INAPP:
        return Outgoing(1, "u1", channel, "<m1@example.com>", notification={"delivery_id": 1})
    return Outgoing(1, "u1", channel, "<m1@example.com>", "a@example.com", "b@example.com", MAIL)


def _send(transport: Transport, message: Outgoing):
    async def go():
        try:
            return await transport.send(message)
        finally:
            await transport.close()

    return asyncio.run(go())


@pytest.mark.parametrize("kind", ["memory", "inapp", "outbox", "smtp"])
def test_transport_returns_a_receipt(kind, tmp_path):
    if kind == "smtp":
        for server in serve():
            receipt = _send(SmtpTransport(SmtpSettings.from_url(server.url)), _message())
            assert len(server.mailbox.messages) == 1
    else:
        transport: Transport = {
            "memory": lambda: MemoryTransport(),
            "inapp": lambda: InAppTransport(),
            "outbox": lambda: OutboxTransport(tmp_path / "outbox"),
        }[kind]()
        channel = Channel.INAPP if kind == "inapp" else Channel.EMAIL
        receipt = _send(transport, _message(channel))
    assert receipt.reply
    assert not receipt.duplicate


def test_outbox_reports_a_second_write_of_the_same_message_as_duplicate(tmp_path):
    transport = OutboxTransport(tmp_path)
    assert not _send(transport, _message()).duplicate
    assert _send(transport, _message()).duplicate
    assert len(list(tmp_path.glob("*.eml"))) == 1


@pytest.mark.parametrize("kind", ["memory", "smtp"])
def test_refused_recipient_is_a_delivery_error(kind):
    if kind == "memory":
        transport = MemoryTransport(failures={"u1": PermanentDeliveryError("550 no such user")})
        with pytest.raises(DeliveryError):
            _send(transport, _message())
        return
    for server in serve(Mailbox(rcpt_reply="550 5.1.1 no such user")):
        with pytest.raises(PermanentDeliveryError, match="550"):
            _send(SmtpTransport(SmtpSettings.from_url(server.url)), _message())


def test_smtp_reuses_its_connection():
    sessions = []

    class Counting(Mailbox):
        async def handle_EHLO(self, server, session, envelope, hostname, responses):
            sessions.append(session)
            session.host_name = hostname
            return responses

    for server in serve(Counting()):
        transport = SmtpTransport(SmtpSettings.from_url(server.url), concurrency=1)

        async def three(transport: Transport) -> None:
            for _ in range(3):
                await transport.send(_message())
            await transport.close()

        asyncio.run(three(transport))
        assert len(server.mailbox.messages) == 3
    assert len(sessions) == 1


@pytest.mark.parametrize(
    ("body", "received"),
    [
        # lines the server must unstuff, on our own DATA path
        (b".\r\n..\r\n.starts with a period\r\nlast\r\n", None),
        (b"ends with a lone period\r\n.\r\n", None),  # would end DATA early unless stuffed
        # not CRLF throughout: aiosmtplib's data() makes every line end CRLF
        (b"bare LF\n.dot\rlone CR\r\n", b"bare LF\r\n.dot\r\nlone CR\r\n"),
    ],
)
def test_smtp_sends_the_message_bytes_exactly(body, received):
    """Lines that start with a period are stuffed on the wire and arrive as written
    (RFC 5321 section 4.5.2)."""
    data = MAIL.replace(b"body\r\n", body)
    message = Outgoing(1, "u1", Channel.EMAIL, "<m1@example.com>", "a@example.com", "b@x.org", data)
    for server in serve():
        receipt = _send(SmtpTransport(SmtpSettings.from_url(server.url)), message)
        assert receipt.reply.startswith("250")
        assert server.mailbox.contents == [MAIL.replace(b"body\r\n", received or body)]


@pytest.mark.parametrize(
    ("sender", "recipient", "envelope"),
    [
        # plain addresses (ours always are): MAIL and RCPT go as they are
        ("bounces+2n9c-1a2b3c@bounces.example.com", "b@example.com", None),
        ("a@example.com", "émilie@exemple.fr", None),  # SMTPUTF8
        # anything else goes through aiosmtplib's parsing, and arrives the same
        ("Privacy <a@example.com>", "b@example.com", ("a@example.com", "b@example.com")),
        ('"a b"@example.com', "b@example.com", None),
    ],
)
def test_smtp_envelope_arrives_as_addressed(sender, recipient, envelope):
    rcpts = []

    class Envelope(Mailbox):
        async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
            rcpts.append(address)
            return await super().handle_RCPT(server, session, envelope, address, rcpt_options)

    message = Outgoing(1, "u1", Channel.EMAIL, "<m1@example.com>", sender, recipient, MAIL)
    for server in serve(Envelope(), enable_SMTPUTF8=True, decode_data=False):
        assert _send(SmtpTransport(SmtpSettings.from_url(server.url)), message).reply
        assert (server.mailbox.senders[0], rcpts[0]) == (envelope or (sender, recipient))


@pytest.mark.parametrize(
    ("mail_reply", "rcpt_reply", "error"),
    [
        ("553 5.7.1 sender not allowed", "250 OK", TransportConfigError),  # about us
        # even for now: the same for every recipient (Postfix: 450 for an unknown domain)
        ("450 4.1.8 sender domain not found", "250 OK", TransportConfigError),
        ("421 4.3.2 shutting down", "250 OK", TransportConfigError),
        ("250 OK", "450 4.2.1 try later", TemporaryDeliveryError),
        ("250 OK", "251 will forward", None),
    ],
)
def test_smtp_envelope_replies_are_judged_by_code(mail_reply, rcpt_reply, error):
    class Replies(Mailbox):
        async def handle_MAIL(self, server, session, envelope, address, mail_options):
            if mail_reply.startswith("250"):
                envelope.mail_from = address
            return mail_reply

        async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
            if rcpt_reply[:3] in ("250", "251"):
                envelope.rcpt_tos.append(address)
            return rcpt_reply

    for server in serve(Replies()):
        transport = SmtpTransport(SmtpSettings.from_url(server.url))
        if error is None:
            assert _send(transport, _message()).reply.startswith("250")
            continue
        refused = rcpt_reply if mail_reply.startswith("250") else mail_reply
        with pytest.raises(error, match=refused[:3]):
            _send(transport, _message())
        assert not server.mailbox.messages
