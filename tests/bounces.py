"""Bounce test helpers: the real receiver on a free loopback port in its own thread, and
reports built the way MTAs write them."""

import asyncio
import smtplib
import threading
from email.utils import make_msgid

from sqlalchemy import Engine

from engine.bounces.processing import BounceProcessor
from engine.bounces.receiver import BounceHandler, start_receiver
from engine.delivery.tokens import Keys


class BounceServer:
    """`herald bounces serve`'s receiver, in-process, for the bounce domain given."""

    def __init__(self, engine: Engine, secret: str, domain: str, **options: object) -> None:
        self.processor = BounceProcessor(engine, Keys(secret.encode()))
        self.handler = BounceHandler(self.processor, [domain])
        self._options = options
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.port = 0

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def start() -> None:
            self._server = await start_receiver(self.handler, "127.0.0.1", 0, **self._options)  # type: ignore[arg-type]
            self.port = self._server.sockets[0].getsockname()[1]
            self._ready.set()

        self._loop.run_until_complete(start())
        self._loop.run_forever()
        self._loop.close()

    def __enter__(self) -> "BounceServer":
        self._thread.start()
        assert self._ready.wait(5), "bounce receiver did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        async def stop() -> None:
            self._server.close()
            await self._server.wait_closed()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
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
