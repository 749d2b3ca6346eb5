"""Bounce test helpers: the real receiver on a free loopback port in its own thread, and
reports built the way MTAs write them."""

import smtplib
from email.utils import make_msgid
from typing import Any

from sqlalchemy import Engine

from engine.bounces.processing import BounceProcessor
from engine.bounces.receiver import BounceHandler, start_receiver
from engine.delivery.tokens import Keys
from tests.loopserver import LoopServer


class BounceServer(LoopServer):
    """`herald bounces serve`'s receiver, in-process, for the bounce domain given."""

    name = "bounce receiver"

    def __init__(self, engine: Engine, secret: str, domain: str, **options: object) -> None:
        super().__init__()
        self.processor = BounceProcessor(engine, Keys(secret.encode()))
        self.handler = BounceHandler(self.processor, [domain])
        self._options = options

    async def _start(self) -> Any:
        return await start_receiver(self.handler, "127.0.0.1", 0, **self._options)  # type: ignore[arg-type]

    def __exit__(self, *exc: object) -> None:
        super().__exit__(*exc)
        self.handler.close()

    def send(self, to: str, data: bytes, sender: str = "") -> tuple[int, bytes]:
        """Deliver one message as an MTA would (null sender); the reply to DATA."""
        with smtplib.SMTP("127.0.0.1", self.port, timeout=10) as client:
            client.ehlo("mta.test")
            code, text = client.mail(sender)
            assert code == 250, text
            code, text = client.rcpt(to)
            if code != 250:
                return code, text
            return client.data(data)


def dsn(
    to: str,
    original_id: str,
    *,
    status: str = "5.1.1",
    action: str = "failed",
    recipient: str = "anna@example.com",
) -> bytes:
    """An RFC 3464 report, as Postfix writes one."""
    diagnostic = f"smtp; 550 {status} <{recipient}>: Recipient address rejected: User unknown"
    return f"""\
From: Mail Delivery System <MAILER-DAEMON@mta.test>
To: {to}
Subject: Undelivered Mail Returned to Sender
Message-ID: {make_msgid(domain="mta.test")}
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B"

--B
Content-Type: text/plain

<{recipient}>: host mx.example.com said: 550 {status} User unknown

--B
Content-Type: message/delivery-status

Reporting-MTA: dns; mta.test

Final-Recipient: rfc822; {recipient}
Original-Recipient: rfc822;{recipient}
Action: {action}
Status: {status}
Diagnostic-Code: {diagnostic}

--B
Content-Type: text/rfc822-headers

Return-Path: <{to}>
From: Privacy Team <privacy@example.com>
To: {recipient}
Message-ID: {original_id}

--B--
""".replace("\n", "\r\n").encode()


def arf(to: str, original_id: str) -> bytes:
    """An abuse report (RFC 5965), as a mailbox provider's feedback loop sends it."""
    return f"""\
From: feedback@provider.test
To: {to}
Subject: Abuse report
Message-ID: <arf-1@provider.test>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report; boundary="F"

--F
Content-Type: text/plain

This is an email abuse report.

--F
Content-Type: message/feedback-report

Feedback-Type: abuse
User-Agent: provider/1.0
Version: 1
Original-Rcpt-To: <anna@example.com>

--F
Content-Type: text/rfc822-headers

Return-Path: <{to}>
Message-ID: {original_id}

--F--
""".replace("\n", "\r\n").encode()
