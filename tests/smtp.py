"""A real SMTP server for tests: aiosmtpd on a free loopback port, in its own thread.

It answers as told (4xx, 5xx, a dropped connection, slowness), so failures are
injected as server replies, never as patches.
"""

import asyncio
import email
import email.policy
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult

from tests.loopserver import LoopServer


@dataclass
class Mailbox:
    """aiosmtpd handler that keeps what it accepts and answers as told."""

    messages: list[EmailMessage] = field(default_factory=list)
    contents: list[bytes] = field(default_factory=list)  # each message as received
    senders: list[str] = field(default_factory=list)  # envelope senders (MAIL FROM)
    mail_replies: list[str] = field(default_factory=list)  # consumed one per MAIL, then 250
    rcpt_reply: str = "250 OK"
    data_replies: list[str] = field(default_factory=list)  # consumed one per DATA, then 250
    drop_at: set[int] = field(default_factory=set)  # DATA numbers (1-based) that hang up
    delay_s: float = 0.0
    datas: int = 0

    async def handle_MAIL(self, server, session, envelope, address, mail_options) -> str:
        reply = self.mail_replies.pop(0) if self.mail_replies else "250 OK"
        if reply.startswith("250"):
            envelope.mail_from, envelope.mail_options = address, mail_options
        return reply

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options) -> str:
        if self.rcpt_reply.startswith("250"):
            envelope.rcpt_tos.append(address)
        return self.rcpt_reply

    async def handle_DATA(self, server, session, envelope) -> str:
        self.datas += 1
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.datas in self.drop_at:
            server.transport.close()
            return "421 closing"
        reply = self.data_replies.pop(0) if self.data_replies else "250 2.0.0 OK"
        if reply.startswith("250"):
            self.messages.append(
                email.message_from_bytes(envelope.content, policy=email.policy.default)
            )
            self.senders.append(envelope.mail_from)
            self.contents.append(envelope.original_content or envelope.content)
            reply = f"250 2.0.0 OK queued as Q{len(self.messages)}"
        return reply

    def message_ids(self) -> list[str]:
        return [str(m["Message-ID"]) for m in self.messages]


class SmtpServer(LoopServer):
    name = "SMTP server"

    def __init__(
        self, mailbox: Mailbox, listen_ssl: ssl.SSLContext | None = None, **smtp_options: Any
    ) -> None:
        super().__init__()
        self.mailbox = mailbox
        self._listen_ssl = listen_ssl  # implicit TLS (smtps) from the first byte
        self._options = smtp_options

    async def _start(self) -> Any:
        return await self._loop.create_server(
            lambda: SMTP(self.mailbox, hostname="localhost", **self._options),
            host="127.0.0.1",
            port=0,
            ssl=self._listen_ssl,
        )

    @property
    def url(self) -> str:
        """A plain-text session: this server offers no TLS (tests/test_tls.py does)."""
        return f"smtp://127.0.0.1:{self.port}?tls=none"

    def wait_for(self, count: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.mailbox.messages) < count:
            assert time.monotonic() < deadline, f"only {len(self.mailbox.messages)} arrived"
            time.sleep(0.02)


def refuse_login(server, session, envelope, mechanism, auth_data) -> AuthResult:
    return AuthResult(success=False, handled=False)


def serve(mailbox: Mailbox | None = None, **options: Any) -> Iterator[SmtpServer]:
    with SmtpServer(mailbox or Mailbox(), **options) as server:
        yield server
