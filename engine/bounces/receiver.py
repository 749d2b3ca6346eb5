"""The bounce receiver: SMTP or LMTP that an MTA's bounce domain routes to. I/O: network
via aiosmtpd; the database through the processor, on one worker thread.

It accepts only recipients in the bounce domains, refuses a message over `max_bytes`
(at MAIL FROM when the client declares its SIZE, else after DATA, without keeping it),
and answers 250 to anything it read, bounce or not, so that the MTA never bounces a
bounce. A 451 asks the MTA to retry later: when the database cannot take the write, or
when the bounce overtook the commit of its own delivery's `sent`.
"""

import asyncio
import logging
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from engine.bounces.processing import BounceProcessor, Outcome, bounce_domains
from engine.delivery.tokens import Keys
from engine.errors import ConfigError

logger = logging.getLogger(__name__)
MAX_BYTES = 10 * 1024 * 1024  # a DSN quotes the original; notices are ~12 KB
REREAD_S = 5.0


class BounceHandler:
    """aiosmtpd handler: the bounce domains' recipients in, reports to the processor.

    Without `domains`, they are the launched campaigns' return-path domains, read again
    (at most every few seconds) when a recipient's domain is not among them, so that a
    campaign launched after the receiver started is served too."""

    def __init__(self, processor: BounceProcessor, domains: Iterable[str] | None = None) -> None:
        self.processor = processor
        self.fixed = domains is not None
        self.domains = frozenset(d.lower() for d in domains or ())
        self._read_at = -REREAD_S
        self._db = ThreadPoolExecutor(max_workers=1, thread_name_prefix="herald-bounces")

    async def _known(self, domain: str) -> bool:
        if domain in self.domains or self.fixed:
            return domain in self.domains
        now = time.monotonic()
        if now - self._read_at >= REREAD_S:
            self._read_at = now
            loop = asyncio.get_running_loop()
            found = await loop.run_in_executor(self._db, bounce_domains, self.processor.engine)
            self.domains = frozenset(found)
        return domain in self.domains

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if not await self._known(address.rpartition("@")[2].lower()):
            return "550 5.1.1 not a bounce address here"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or envelope.content
        data = content if isinstance(content, bytes) else str(content or "").encode()
        loop = asyncio.get_running_loop()
        try:
            outcome = await loop.run_in_executor(
                self._db, self.processor.process, data, list(envelope.rcpt_tos)
            )
        except SQLAlchemyError:
            logger.exception("cannot record a report now; the sender will retry")
            return "451 4.3.0 cannot record it now, try again later"
        if outcome is Outcome.EARLY:
            return "451 4.3.0 the delivery is not recorded as sent yet, try again later"
        return f"250 2.0.0 {outcome.value}"

    def close(self) -> None:
        self._db.shutdown(wait=True)


async def start_receiver(
    handler: BounceHandler,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    lmtp: bool = False,
    max_bytes: int = MAX_BYTES,
) -> asyncio.Server:
    """Listen on host:port (port 0: any free one; read it from the server's socket)."""
    protocol: Any = LMTP if lmtp else SMTP

    def session() -> SMTP:
        return protocol(  # type: ignore[no-any-return]
            handler, data_size_limit=max_bytes, hostname="herald-bounces", ident="Herald"
        )

    return await asyncio.get_running_loop().create_server(session, host=host, port=port)


def parse_listen(value: str) -> tuple[str, int]:
    """ "host:port" or ":port" (loopback) from HERALD_BOUNCE_LISTEN. Raises ValueError."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"HERALD_BOUNCE_LISTEN must be host:port, not {value!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


async def receive_at(listen: str, engine: Engine, keys: Keys) -> asyncio.Server:
    """The receiver on HERALD_BOUNCE_LISTEN, for the campaigns' bounce domains.
    Raises ConfigError for a malformed value or an address it cannot bind."""
    try:
        host, port = parse_listen(listen)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    handler = BounceHandler(BounceProcessor(engine, keys))
    try:
        server = await start_receiver(handler, host, port)
    except OSError as exc:
        raise ConfigError(f"HERALD_BOUNCE_LISTEN: cannot listen on {host}:{port}: {exc}") from exc
    logger.info("receiving bounces on %s:%d", host, port)
    return server
