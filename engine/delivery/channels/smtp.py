"""SMTP transport. I/O: network via aiosmtplib (only this module and wire.py import it).

Keeps up to `concurrency` connections open and reuses them. aiosmtplib opens each one
(EHLO, STARTTLS, AUTH); then wire.Session sends the mail transactions, pipelined where
the server offers it, and keeps the final reply's code and queue id as evidence.

TLS cannot be downgraded: with `tls=starttls` (the default) a server that does not offer
STARTTLS, or an attacker who deletes it from the EHLO reply, stops the run before any
credential or message leaves. Every TLS failure (an unknown CA, a self-signed
certificate, a wrong name) is our setup, never a recipient's problem: it raises
TransportConfigError, which stops the run and marks no one failed.
"""

import asyncio
import contextlib
import ipaddress
import re
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qs, unquote, urlsplit

import aiosmtplib

from engine.delivery.channels import wire
from engine.delivery.channels.base import Outgoing, Receipt, TlsInfo, Transport
from engine.delivery.mime import seven_bit
from engine.errors import (
    ConfigError,
    DeliveryError,
    EngineError,
    PermanentDeliveryError,
    TemporaryDeliveryError,
    TransportConfigError,
    UnreachableError,
)
from engine.models import Channel

TlsMode = Literal["starttls", "implicit", "none"]
# A relay's refusal to pass mail on for us, as Postfix ("Relay access denied"), Sendmail
# ("Relaying denied"), Exim ("relay not permitted") and Exchange ("Unable to relay") say it.
_RELAY_DENIED = re.compile(
    r"\brelay(ing)?\b[^\n]{0,40}\b(denied|not permitted|not allowed|prohibited)\b"
    r"|\bunable to relay\b",
    re.IGNORECASE,
)
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")
_MODES: dict[str, TlsMode] = {"starttls": "starttls", "implicit": "implicit", "none": "none"}
_OPTIONS = ("tls", "starttls", "timeout", "data_timeout", "verify", "cafile", "allow_plaintext")
# The wait for the server's reply to a whole message, when content filters run: RFC 5321
# section 4.5.3.2.6 suggests 10 minutes, and a reply that comes too late makes the
# delivery a possible duplicate (it is retried). But a claimed delivery's lease
# (SendOptions.lease_s, 300 s) must outlast its wait for the rate limit (up to a quarter
# of the lease), a new connection and its commands' replies (`timeout` each), and this:
# past the lease, another worker takes it back and sends it again all the same.
DATA_TIMEOUT_S, MAX_DATA_TIMEOUT_S = 120.0, 180.0


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    username: str | None = None
    password: str | None = None
    tls: TlsMode = "starttls"  # starttls: required, never "when offered"
    timeout_s: float = 30.0  # for each reply but the one to a whole message
    data_timeout_s: float = DATA_TIMEOUT_S
    verify: bool = True  # check the server's certificate and name
    cafile: str | None = None  # extra CAs to trust (aiosmtplib's cert_bundle)
    allow_plaintext: bool = False  # tls=none to any host, AUTH without TLS

    @classmethod
    def from_url(cls, url: str) -> "SmtpSettings":
        """smtp://user:pass@host:587?tls=starttls|implicit|none&cafile=PATH&verify=false
        &timeout=30&data_timeout=120&allow_plaintext=true, or smtps://host:465 (implicit TLS).

        `starttls=true|false` is kept as an alias of tls=starttls|none. Raises
        ConfigError naming the option at fault.
        """
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ConfigError(
                f"HERALD_SMTP_URL must look like smtp://user:pass@host:587, "
                f"not {parts.scheme}://..."
            )
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        unknown = set(query) - set(_OPTIONS)
        if unknown:
            raise ConfigError(
                f"HERALD_SMTP_URL: unknown option(s) {', '.join(sorted(unknown))}; "
                f"expected {', '.join(_OPTIONS)}"
            )

        def flag(name: str) -> bool | None:
            value = query.get(name)
            if value is None:
                return None
            if value.lower() not in _TRUE + _FALSE:
                raise ConfigError(f"HERALD_SMTP_URL: {name} must be true or false")
            return value.lower() in _TRUE

        tls = _tls_mode(parts.scheme, query.get("tls"), flag("starttls"))
        try:
            port = parts.port or (465 if tls == "implicit" else 25)
        except ValueError as exc:
            raise ConfigError(f"HERALD_SMTP_URL: {exc}") from exc
        timeout = _seconds(query, "timeout", 30.0, 3600.0)
        data_timeout = _seconds(query, "data_timeout", DATA_TIMEOUT_S, MAX_DATA_TIMEOUT_S)
        settings = cls(
            host=parts.hostname,
            port=port,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            tls=tls,
            timeout_s=timeout,
            data_timeout_s=data_timeout,
            verify=flag("verify") is not False,
            cafile=query.get("cafile") or None,
            allow_plaintext=flag("allow_plaintext") is True,
        )
        settings._check()
        return settings

    def _check(self) -> None:
        if self.tls == "none":
            if self.cafile or not self.verify:
                raise ConfigError("HERALD_SMTP_URL: cafile and verify need tls=starttls|implicit")
            if not (self.allow_plaintext or _local(self.host)):
                raise ConfigError(
                    f"HERALD_SMTP_URL: tls=none to {self.host}, which is not on loopback or "
                    "a private network, would send every notice in clear text; use "
                    "tls=starttls or tls=implicit, or say allow_plaintext=true"
                )
            if self.username and not self.allow_plaintext:
                raise ConfigError(
                    "HERALD_SMTP_URL: tls=none with a user name would send the password in "
                    "clear text; use tls=starttls or tls=implicit, or say allow_plaintext=true"
                )
        if self.cafile:
            if not self.verify:
                raise ConfigError("HERALD_SMTP_URL: cafile has no use with verify=false")
            if not Path(self.cafile).is_file():
                raise ConfigError(f"HERALD_SMTP_URL: cafile {self.cafile} is not a readable file")

    def describe(self) -> str:
        """How email leaves, for `herald send` and the daemon's start. Names no user or
        password: a relay's user name is often an email address."""
        mode = {
            "starttls": "STARTTLS (required)",
            "implicit": "implicit TLS",
            "none": "no TLS (clear text)",
        }[self.tls]
        if self.tls != "none":
            trust = f"CAs in {self.cafile} and the system's" if self.cafile else "system CAs"
            verified = f"certificate verified against {trust}"
            mode += f", {verified}" if self.verify else ", certificate NOT verified"
        auth = ", with AUTH" if self.username else ""
        return f"smtp {self.host}:{self.port}, {mode}{auth}"

    def warnings(self) -> list[str]:
        """The risks these settings take, to log at start."""
        found = []
        if self.tls == "none":
            found.append(
                f"tls=none: every notice to {self.host}:{self.port} goes in clear text"
                + (", and so does the password (allow_plaintext=true)" if self.username else "")
            )
        elif not self.verify:
            found.append(
                f"verify=false: the certificate of {self.host}:{self.port} is not checked; "
                "anyone on the path can read every notice (recorded as tls_verified=false)"
            )
        return found


def _tls_mode(scheme: str, tls: str | None, starttls: bool | None) -> TlsMode:
    """The one TLS mode that the scheme, tls= and its alias starttls= agree on."""
    said: dict[str, TlsMode] = {}
    if scheme == "smtps":
        said["smtps://"] = "implicit"
    if tls is not None:
        if tls.lower() not in _MODES:
            raise ConfigError("HERALD_SMTP_URL: tls must be starttls, implicit or none")
        said[f"tls={tls}"] = _MODES[tls.lower()]
    if starttls is not None:
        said[f"starttls={str(starttls).lower()}"] = "starttls" if starttls else "none"
    if len(set(said.values())) > 1:
        raise ConfigError(
            f"HERALD_SMTP_URL: {' and '.join(said)} contradict each other; give one TLS mode"
        )
    return next(iter(said.values()), "starttls")


def _local(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:  # a name: we do not trust DNS to say it is local
        return False
    return address.is_loopback or address.is_private


@dataclass
class _Connection:
    session: wire.Session
    tls: TlsInfo
    smtputf8: bool  # what the server offered in its last EHLO
    eight_bit_mime: bool


class SmtpTransport(Transport):
    channel = Channel.EMAIL
    takes_eight_bit = True  # BODY=8BITMIME where offered, else made 7-bit per message

    def __init__(self, settings: SmtpSettings, concurrency: int = 8) -> None:
        self._settings = settings
        self._slots: asyncio.LifoQueue[_Connection | None] = asyncio.LifoQueue()
        for _ in range(concurrency):
            self._slots.put_nowait(None)  # a slot without a connection yet
        self._in_doubt: set[int] = set()  # sends cancelled between the message and its answer

    def check_verified_tls(self) -> None:
        s = self._settings
        if s.tls == "none" or not s.verify:
            raise TransportConfigError(
                f"the campaign requires verified TLS (delivery.require_verified_tls), but "
                f"HERALD_SMTP_URL sends to {s.host}:{s.port} with "
                + ("tls=none" if s.tls == "none" else "verify=false")
            )

    async def send(self, message: Outgoing) -> Receipt:
        connection = await self._slots.get()
        keep = False
        try:
            with _translated_smtp_errors(self._settings):
                if connection is None or not connection.session.is_open:
                    connection = await self._connect()
                reply = await self._transaction(connection, message)
            keep = True
            return Receipt(reply, tls=connection.tls)
        except DeliveryError:
            keep = connection is not None and connection.session.is_open
            raise
        except asyncio.CancelledError:
            if connection is not None and connection.session.in_doubt:
                self._in_doubt.add(message.delivery_id)
            raise
        finally:
            if not keep and connection is not None:
                connection.session.close()
            self._slots.put_nowait(connection if keep else None)

    def in_doubt(self, delivery_id: int) -> bool:
        return delivery_id in self._in_doubt

    async def _connect(self) -> _Connection:
        """Connect, upgrade, then log in: in that order, checked at each step, rather
        than by aiosmtplib's connect(), whose default sends AUTH in clear text when
        STARTTLS is missing. Then the session sends mail itself (wire.py)."""
        s = self._settings
        client = aiosmtplib.SMTP(
            hostname=s.host,
            port=s.port,
            use_tls=s.tls == "implicit",
            start_tls=False,
            timeout=s.timeout_s,
            validate_certs=s.verify,
            cert_bundle=s.cafile,
        )
        await client.connect()
        try:
            tls = await self._secure(client)
            if s.username:
                if tls.version is None and not s.allow_plaintext:  # _check() prevents it
                    raise TransportConfigError("refusing to send a password without TLS")
                await client.login(s.username, s.password or "")
            offers = client.supports_extension
            session = wire.Session.take_over(client, s.timeout_s, s.data_timeout_s)
        except BaseException:
            client.close()
            raise
        return _Connection(session, tls, offers("smtputf8"), offers("8bitmime"))

    async def _secure(self, client: aiosmtplib.SMTP) -> TlsInfo:
        """Upgrade with STARTTLS where required; what the session then is."""
        s = self._settings
        await client.ehlo()  # what the server offers: STARTTLS, SMTPUTF8, AUTH
        if s.tls == "starttls":
            if not client.supports_extension("starttls"):
                raise TransportConfigError(
                    f"the SMTP server {s.host}:{s.port} did not offer STARTTLS, which "
                    "tls=starttls requires: the server lacks it, or something on the way "
                    "removed it. Nothing was sent, no password either. Use tls=implicit "
                    "for port 465; tls=none only for a relay on a private network"
                )
            try:
                await client.starttls()
            except aiosmtplib.SMTPResponseException as exc:
                raise TransportConfigError(
                    f"the SMTP server {s.host}:{s.port} refused STARTTLS: {exc.code} {exc.message}"
                ) from exc
            await client.ehlo()  # RFC 3207: ask again, over TLS, what the server offers
        return _tls_info(client)

    async def _transaction(self, connection: _Connection, message: Outgoing) -> str:
        utf8 = not (message.sender.isascii() and message.recipient.isascii())
        if utf8 and not connection.smtputf8:
            raise PermanentDeliveryError(
                "the server does not accept internationalised addresses (no SMTPUTF8)"
            )
        options, encoding = (["SMTPUTF8"], "utf-8") if utf8 else ([], "ascii")
        data = message.data
        if message.eight_bit:
            if connection.eight_bit_mime:
                options.append("BODY=8BITMIME")
            else:
                data = seven_bit(data)
        code, text = await connection.session.send(
            message.sender, message.recipient, options, encoding, data
        )
        return f"{code} {text}"

    async def close(self) -> None:
        sessions = []
        while not self._slots.empty():
            connection = self._slots.get_nowait()
            if connection is not None:
                sessions.append(connection.session)
        # All at once: each may wait its timeout for a server that never answers QUIT
        await asyncio.gather(*(session.quit() for session in sessions))


def _seconds(query: dict[str, str], name: str, default: float, most: float) -> float:
    """A wait in seconds from the URL: more than 0, at most `most`."""
    raw = query.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not 0 < value <= most:  # also refuses nan and inf
        raise ConfigError(
            f"HERALD_SMTP_URL: {name} must be a number of seconds above 0 and at most "
            f"{most:g}, not {raw!r}"
        )
    return value


def _tls_info(client: aiosmtplib.SMTP) -> TlsInfo:
    """What the session really is, read from the socket rather than from our settings."""
    tls_object = client.get_transport_info("ssl_object")
    if tls_object is None:
        return TlsInfo(None, None, False)
    context = client.get_transport_info("sslcontext")
    verified = (
        context is not None and context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    )
    cipher = tls_object.cipher()
    return TlsInfo(tls_object.version(), cipher[0] if cipher else None, verified)


def _ssl_error(exc: BaseException) -> ssl.SSLError | None:
    """The ssl.SSLError in `exc` or in what caused it (aiosmtplib wraps implicit TLS
    handshake failures in SMTPConnectError)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, ssl.SSLError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _tls_problem(settings: SmtpSettings, error: ssl.SSLError) -> TransportConfigError:
    where = f"{settings.host}:{settings.port}"
    # Set by the ssl module on the errors it raises, absent on ones built by hand
    why = getattr(error, "verify_message", None) or getattr(error, "reason", None) or error
    if isinstance(error, ssl.SSLCertVerificationError):
        hint = (
            "trust its CA with cafile=PATH in HERALD_SMTP_URL (or SSL_CERT_FILE), or fix "
            "the server's certificate"
        )
        return TransportConfigError(
            f"TLS with the SMTP server {where} failed: its certificate was not accepted: "
            f"{why}; {hint}. Nothing was sent"
        )
    return TransportConfigError(f"TLS with the SMTP server {where} failed: {why}. Nothing was sent")


@contextlib.contextmanager
def _translated_smtp_errors(settings: SmtpSettings) -> Iterator[None]:
    """Map aiosmtplib's errors onto ours."""
    try:
        yield
    except EngineError:
        raise
    except (aiosmtplib.SMTPException, OSError) as exc:
        raise _translated(settings, exc) from exc


def _translated(settings: SmtpSettings, exc: Exception) -> EngineError:
    def by_code(code: int, text: str) -> DeliveryError:
        # Only a 5xx refuses for good (DESIGN section 7); a reply that fits no command
        # (221 or 354 where 25x was due) is the server's confusion: tried again later.
        error = PermanentDeliveryError if 500 <= code < 600 else TemporaryDeliveryError
        return error(f"{code} {text}".strip())

    if (tls_error := _ssl_error(exc)) is not None:  # before OSError: SSLError is one
        return _tls_problem(settings, tls_error)
    if isinstance(exc, aiosmtplib.SMTPSenderRefused):
        # About our sender, so the same for every recipient, even as a 4xx: Postfix answers
        # 450 for a sender domain it cannot resolve. Retried per recipient, it would end by
        # failing them all; the run stops instead and marks no one (the daemon retries).
        later = " (refused for now: try again later)" if 400 <= exc.code < 500 else ""
        return TransportConfigError(
            f"the SMTP server refused our envelope sender: {exc.code} {exc.message}{later}"
        )
    if isinstance(
        exc, aiosmtplib.SMTPAuthenticationError | aiosmtplib.SMTPNotSupported
    ):  # about us, not the recipient
        return TransportConfigError(f"the SMTP server rejected our setup: {exc}")
    if isinstance(exc, aiosmtplib.SMTPRecipientRefused) and _RELAY_DENIED.search(exc.message):
        # The relay will not pass mail on for us (no or wrong login, a sender it does not
        # serve): the same for every recipient, and ours to fix, not theirs to fail.
        return TransportConfigError(
            f"the SMTP server {settings.host}:{settings.port} refuses to relay for us: "
            f"{exc.code} {exc.message}; check the user and password in HERALD_SMTP_URL, or "
            "what the relay accepts from us. No one was marked failed"
        )
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        worst = max(exc.recipients, key=lambda r: r.code)
        return by_code(worst.code, worst.message)
    if isinstance(exc, aiosmtplib.SMTPConnectError):  # incl. timeouts and 421 greetings
        return UnreachableError(f"cannot connect to {settings.host}:{settings.port}: {exc}")
    if isinstance(exc, aiosmtplib.SMTPResponseException):  # incl. SMTPDataError
        return by_code(exc.code, exc.message)
    if isinstance(exc, aiosmtplib.SMTPServerDisconnected | aiosmtplib.SMTPTimeoutError | OSError):
        return TemporaryDeliveryError(f"connection lost: {exc or type(exc).__name__}")
    return TransportConfigError(f"the SMTP server rejected our setup: {exc}")  # e.g. no AUTH
