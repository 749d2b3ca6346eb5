"""SMTP transport. I/O: network via aiosmtplib (the only module importing it).

Keeps up to `concurrency` connections open and reuses them. Speaks MAIL/RCPT/DATA
itself rather than calling sendmail(), because sendmail() keeps only the text of the
final reply and we keep its code and queue id as evidence.
"""

import asyncio
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

import aiosmtplib

from engine.delivery.channels.base import Outgoing, Receipt, Transport
from engine.delivery.mime import seven_bit
from engine.errors import (
    ConfigError,
    DeliveryError,
    PermanentDeliveryError,
    TemporaryDeliveryError,
    TransportConfigError,
)
from engine.models import Channel

_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    username: str | None = None
    password: str | None = None
    use_tls: bool = False  # implicit TLS (smtps://, usually port 465)
    start_tls: bool | None = None  # None: upgrade when the server offers STARTTLS
    timeout_s: float = 30.0
    validate_certs: bool = True

    @classmethod
    def from_url(cls, url: str) -> "SmtpSettings":
        """smtp://user:pass@host:587?starttls=true&timeout=30, or smtps://host:465."""
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ConfigError(
                f"HERALD_SMTP_URL must look like smtp://user:pass@host:587, "
                f"not {parts.scheme}://..."
            )
        query = {k: v[-1].lower() for k, v in parse_qs(parts.query).items()}
        unknown = set(query) - {"starttls", "timeout", "verify"}
        if unknown:
            raise ConfigError(
                f"HERALD_SMTP_URL: unknown option(s) {', '.join(sorted(unknown))}; "
                "expected starttls, timeout, verify"
            )

        def flag(name: str) -> bool | None:
            value = query.get(name)
            if value is None:
                return None
            if value not in _TRUE + _FALSE:
                raise ConfigError(f"HERALD_SMTP_URL: {name} must be true or false")
            return value in _TRUE

        use_tls = parts.scheme == "smtps"
        try:
            timeout = float(query.get("timeout", "30"))
            port = parts.port or (465 if use_tls else 25)
        except ValueError as exc:
            raise ConfigError(f"HERALD_SMTP_URL: {exc}") from exc
        return cls(
            host=parts.hostname,
            port=port,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            use_tls=use_tls,
            start_tls=None if use_tls else flag("starttls"),
            timeout_s=timeout,
            validate_certs=flag("verify") is not False,
        )


class SmtpTransport(Transport):
    channel = Channel.EMAIL
    takes_eight_bit = True  # BODY=8BITMIME where offered, else made 7-bit per message

    def __init__(self, settings: SmtpSettings, concurrency: int = 8) -> None:
        self._settings = settings
        self._slots: asyncio.LifoQueue[aiosmtplib.SMTP | None] = asyncio.LifoQueue()
        for _ in range(concurrency):
            self._slots.put_nowait(None)  # a slot without a connection yet

    async def send(self, message: Outgoing) -> Receipt:
        client = await self._slots.get()
        keep = False
        try:
            with _translated_smtp_errors():
                if client is None or not client.is_connected:
                    client = await self._connect()
                reply = await self._transaction(client, message)
            keep = True
            return Receipt(reply)
        except DeliveryError:
            keep = client is not None and client.is_connected
            raise
        finally:
            if not keep and client is not None:
                client.close()
            self._slots.put_nowait(client if keep else None)

    async def _connect(self) -> aiosmtplib.SMTP:
        s = self._settings
        client = aiosmtplib.SMTP(
            hostname=s.host,
            port=s.port,
            username=s.username,
            password=s.password,
            use_tls=s.use_tls,
            start_tls=s.start_tls,
            timeout=s.timeout_s,
            validate_certs=s.validate_certs,
        )
        try:
            await client.connect()
        except (
            aiosmtplib.SMTPConnectError,
            aiosmtplib.SMTPTimeoutError,
            aiosmtplib.SMTPServerDisconnected,
            OSError,
        ):
            raise  # the server is unreachable or busy: transient, mapped by the caller
        except aiosmtplib.SMTPException as exc:  # authentication, STARTTLS: our setup
            raise TransportConfigError(f"the SMTP server rejected our setup: {exc}") from exc
        return client

    async def _transaction(self, client: aiosmtplib.SMTP, message: Outgoing) -> str:
        utf8 = not (message.sender.isascii() and message.recipient.isascii())
        if utf8 and not client.supports_extension("smtputf8"):
            raise PermanentDeliveryError(
                "the server does not accept internationalised addresses (no SMTPUTF8)"
            )
        options, encoding = (["SMTPUTF8"], "utf-8") if utf8 else ([], "ascii")
        data = message.data
        if message.eight_bit:
            if client.supports_extension("8bitmime"):
                options.append("BODY=8BITMIME")
            else:
                data = seven_bit(data)
        try:
            await client.mail(message.sender, options=options, encoding=encoding)
            await client.rcpt(message.recipient, encoding=encoding)
            response = await client.data(data)
        except (aiosmtplib.SMTPResponseException, aiosmtplib.SMTPRecipientsRefused):
            with contextlib.suppress(aiosmtplib.SMTPException, ConnectionError):
                await client.rset()  # keep the connection usable for the next message
            raise
        return f"{response.code} {response.message}"

    async def close(self) -> None:
        while not self._slots.empty():
            client = self._slots.get_nowait()
            if client is not None and client.is_connected:
                with contextlib.suppress(aiosmtplib.SMTPException, ConnectionError):
                    await client.quit()


@contextlib.contextmanager
def _translated_smtp_errors() -> Iterator[None]:
    """Map aiosmtplib's errors onto ours. Order matters: subclasses first."""

    def by_code(code: int, text: str) -> DeliveryError:
        error = TemporaryDeliveryError if 400 <= code < 500 else PermanentDeliveryError
        return error(f"{code} {text}".strip())

    try:
        yield
    except (
        aiosmtplib.SMTPAuthenticationError,
        aiosmtplib.SMTPSenderRefused,
        aiosmtplib.SMTPNotSupported,
    ) as exc:  # about us, not the recipient
        raise TransportConfigError(f"the SMTP server rejected our setup: {exc}") from exc
    except aiosmtplib.SMTPRecipientsRefused as exc:
        worst = max(exc.recipients, key=lambda r: r.code)
        raise by_code(worst.code, worst.message) from exc
    except aiosmtplib.SMTPConnectError as exc:  # incl. connect timeouts and 421 greetings
        raise TemporaryDeliveryError(f"cannot connect: {exc}") from exc
    except aiosmtplib.SMTPResponseException as exc:  # incl. SMTPRecipientRefused, SMTPDataError
        raise by_code(exc.code, exc.message) from exc
    except (aiosmtplib.SMTPException, OSError) as exc:  # disconnects, read timeouts
        raise TemporaryDeliveryError(f"connection lost: {exc or type(exc).__name__}") from exc
