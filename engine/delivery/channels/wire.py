"""Mail transactions on an open SMTP session, pipelined where the server offers it.
I/O: the network, on a connection aiosmtplib opened.

aiosmtplib opens the session (greeting, EHLO, STARTTLS, AUTH: the parts where a mistake
costs security); then `Session.take_over` becomes the connection's protocol and speaks
the transactions itself, because aiosmtplib reads one reply per command and so cannot
pipeline (RFC 2920), and its general forms cost more than the rest of a send: its
`sendmail` of a prebuilt 10 KB message is ~200-250 µs of CPU, a transaction on a plain
asyncio protocol ~45 µs, ~27 µs pipelined (bench: 8,000 messages into Postfix's
smtp-sink over 8 connections). With PIPELINING, MAIL, RCPT and DATA go in one write and
their three replies are read together: two round trips a message instead of four.

Errors are aiosmtplib's exception types, so the transport maps them as before: a refused
sender is our setup, a refused recipient or message is judged by its code, and a lost,
silent or garbled server is a connection lost (temporary) and closes the session. Lost
after the whole message left, it is a delivery the server may have taken (RFC 1047).
"""

import asyncio
import re
from collections import deque

import aiosmtplib
from aiosmtplib.email import quote_address

from engine.errors import PermanentDeliveryError, TemporaryDeliveryError, TransportConfigError

_MAX_REPLY = 32 * 1024  # bytes of one reply (aiosmtplib allows 4 lines of 8,192)
# An address as we send it (validated at import, or built by us: the return path) has no
# spaces, brackets, quotes or comments; others go through aiosmtplib's parsing and checks.
_PLAIN_ADDRESS = re.compile(r"[^\s<>()\[\]\\,;:\"@]+@[^\s<>()\[\]\\,;:\"@]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")  # never on a command line (aiosmtplib's rule)
_LINE_END = re.compile(rb"\r\n|\r|\n")

Reply = tuple[int, str]
# RFC 5321 section 4.2.1: 25x is the mail system's "done" (250 OK, 251 will forward, 252
# will try); 221 is not (it closes the connection). 354 asks for the message.
_TAKEN = range(250, 260)
_GO_AHEAD = (354,)


class Session(asyncio.Protocol):
    """One SMTP connection after its setup: sends mail transactions, one at a time."""

    def __init__(
        self,
        transport: asyncio.Transport,
        pipelining: bool,
        timeout_s: float,
        data_timeout_s: float | None = None,
    ):
        self._transport, self.pipelining, self._timeout_s = transport, pipelining, timeout_s
        # the reply to a whole message may take longer: content filters run then
        self._data_timeout_s = data_timeout_s or timeout_s
        self._buffer = bytearray()
        self._replies: deque[Reply] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._expected = 0  # replies owed to commands written and not yet answered
        self._lost: str | None = None  # why the session ended, once it has
        # Bytes still in our buffer when it ended. A reset clears the buffer before we
        # hear of it (then 0: the message may have left); an EOF or a timeout does not.
        self._unsent = 0
        self.in_doubt = False  # a whole message went and its answer has not come

    @classmethod
    def take_over(
        cls, client: aiosmtplib.SMTP, timeout_s: float, data_timeout_s: float | None = None
    ) -> "Session":
        """Become the protocol of `client`'s connection, which is then ours alone."""
        transport = client.transport
        if not isinstance(transport, asyncio.Transport) or transport.is_closing():
            raise aiosmtplib.SMTPServerDisconnected("Connection lost")
        pipelining = client.supports_extension("pipelining")
        session = cls(transport, pipelining, timeout_s, data_timeout_s)
        transport.set_protocol(session)
        return session

    @property
    def is_open(self) -> bool:
        return self._lost is None and not self._transport.is_closing()

    async def send(
        self,
        sender: str,
        recipient: str,
        options: list[str],
        encoding: str,
        data: bytes,
    ) -> Reply:
        """One transaction; the server's reply to the message, which it accepted."""
        try:
            mail_from = _quoted(sender, encoding)
        except ValueError as exc:  # the envelope sender is our setup
            raise TransportConfigError(f"cannot send from {sender!r}: {exc}") from None
        try:
            rcpt_to = _quoted(recipient, encoding)
        except ValueError as exc:
            raise PermanentDeliveryError(f"cannot send to this address: {exc}") from None
        commands = [
            b" ".join([b"MAIL FROM:" + mail_from, *map(str.encode, options)]),
            b"RCPT TO:" + rcpt_to,
            b"DATA",
        ]
        replies: list[Reply] = []
        if self.pipelining:
            self._write(b"\r\n".join(commands) + b"\r\n", replies=len(commands))
            replies = [await self._reply() for _ in commands]
        else:
            for command, wanted in zip(commands, (_TAKEN, _TAKEN, _GO_AHEAD), strict=True):
                self._write(command + b"\r\n")
                replies.append(await self._reply())
                if replies[-1][0] not in wanted:
                    break
        refused = _refusal(replies, sender, recipient)
        if refused is not None:
            if len(replies) == 3 and replies[2][0] == 354:  # DATA taken anyway: end it empty
                self._write(b".\r\n")
                await self._reply()
            await self._reset()
            raise refused
        self._write(_stuffed(data) + b".\r\n")
        self.in_doubt = True  # until the answer comes: if this is cancelled, it stays so
        try:
            code, text = await self._reply(self._data_timeout_s)
        except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError) as exc:
            if self._unsent:  # the end of the message never left: not delivered
                raise
            # The server may have taken the message and lost only its answer (RFC 1047):
            # retried all the same, and a later send is counted as a possible duplicate.
            raise TemporaryDeliveryError(
                f"connection lost after the message: {exc}", maybe_delivered=True
            ) from exc
        self.in_doubt = False
        if code not in _TAKEN:
            await self._reset()
            raise aiosmtplib.SMTPDataError(code, text)
        return code, text

    async def quit(self) -> None:
        """Say goodbye and close; a session that cannot is closed all the same."""
        if self.is_open:
            try:
                self._write(b"QUIT\r\n")
                await self._reply()
            except aiosmtplib.SMTPException:
                pass
        self.close()

    def close(self) -> None:
        self._end("Connection closed")
        self._transport.close()

    async def _reset(self) -> None:
        """RSET after a refusal, so the connection serves the next message."""
        try:
            self._write(b"RSET\r\n")
            if (await self._reply())[0] != 250:
                self.close()
        except aiosmtplib.SMTPException:
            self.close()

    def _write(self, data: bytes, replies: int = 1) -> None:
        """Write commands (or a message) that `replies` replies will answer."""
        if not self.is_open:
            raise aiosmtplib.SMTPServerDisconnected(self._lost or "Connection lost")
        self._expected += replies
        self._transport.write(data)

    async def _reply(self, timeout_s: float | None = None) -> Reply:
        if not self._replies:
            try:  # one bound for the whole reply, as aiosmtplib's, not for each packet
                async with asyncio.timeout(timeout_s or self._timeout_s):
                    while not self._replies:
                        if self._lost is not None:
                            raise aiosmtplib.SMTPServerDisconnected(self._lost)
                        self._waiter = asyncio.get_running_loop().create_future()
                        await self._waiter
            except TimeoutError:
                self.close()
                raise aiosmtplib.SMTPReadTimeoutError(
                    "Timed out waiting for server response"
                ) from None
        return self._replies.popleft()

    # asyncio.Protocol: called by the event loop

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while (end := self._buffer.find(b"\n")) >= 0:
            line = bytes(self._buffer[: end + 1])
            if line[3:4] == b"-":  # a reply goes on until a line without the hyphen
                if (end := _last_line_end(self._buffer)) < 0:
                    break
                line = bytes(self._buffer[: end + 1])
            del self._buffer[: len(line)]
            reply = _parse(line)
            if reply is None:
                self._end(f"Malformed SMTP reply: {line[:80]!r}")
                self._transport.close()
                return
            if not self._expected:  # no command awaits it: a reply early or extra, which
                # would answer the next command in its place (a 250 for the message unsent)
                self._end(f"Unsolicited SMTP reply: {line[:80]!r}")
                self._transport.close()
                return
            self._expected -= 1
            self._replies.append(reply)
        if len(self._buffer) > _MAX_REPLY:
            self._end("SMTP reply too long")
            self._transport.close()
        self._wake()

    def eof_received(self) -> bool:
        self._end("Unexpected EOF received")
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self._end(f"Connection lost: {exc}" if exc else "Connection lost")

    def _end(self, why: str) -> None:
        if self._lost is None:
            self._lost = why
            self._unsent = self._transport.get_write_buffer_size()
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


def _quoted(address: str, encoding: str) -> bytes:
    """<address> as MAIL and RCPT take it. A plain address goes as is: aiosmtplib's
    parseaddr costs ~10 µs an address, two a message (timeit)."""
    if _CONTROL.search(address):
        raise ValueError("a control character in the address")
    if _PLAIN_ADDRESS.fullmatch(address):
        return f"<{address}>".encode(encoding)
    return quote_address(address).encode(encoding)  # raises ValueError on an injection


def _refusal(
    replies: list[Reply], sender: str, recipient: str
) -> aiosmtplib.SMTPResponseException | None:
    """What refused the transaction, from the replies to MAIL, RCPT and DATA."""
    (code, text), rest = replies[0], replies[1:]
    if code not in _TAKEN:
        return aiosmtplib.SMTPSenderRefused(code, text, sender)
    if rest and rest[0][0] not in _TAKEN:
        return aiosmtplib.SMTPRecipientRefused(rest[0][0], rest[0][1], recipient)
    if len(rest) == 2 and rest[1][0] not in _GO_AHEAD:
        return aiosmtplib.SMTPDataError(*rest[1])
    return None


def _stuffed(data: bytes) -> bytes:
    """The message with CRLF line ends and every line that starts with a period stuffed
    (RFC 5321 section 4.5.2). aiosmtplib's data() makes two regex passes over each
    message (~100 µs of a 10 KB one). A period starts a line in few of ours: a search
    (~3 µs) finds whether one does.

    The line ends are counted on every message, though mime.build_email makes them all
    CRLF: a bare LF is how a message smuggles another past a server that ends DATA on
    <LF>.<LF>, and two once slipped through build_email (a folded non-ASCII name before
    an internationalised address; a Reply-To with a line break). The count costs ~19 µs
    of a 15 KB notice (timeit: 8.9 to 28 µs)."""
    if not data.count(b"\r") == data.count(b"\n") == data.count(b"\r\n"):
        data = _LINE_END.sub(b"\r\n", data)
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    if data.startswith(b"."):
        data = b"." + data
    return data.replace(b"\r\n.", b"\r\n..") if b"\r\n." in data else data


def _last_line_end(buffer: bytearray) -> int:
    """Where a multiline reply in `buffer` ends (its line without a hyphen), or -1."""
    start = 0
    while (end := buffer.find(b"\n", start)) >= 0:
        if buffer[start + 3 : start + 4] != b"-":
            return end
        start = end + 1
    return -1


def _parse(reply: bytes) -> Reply | None:
    """(code, text) of one reply, its lines' texts joined by newlines; None if malformed."""
    lines = reply.split(b"\n")[:-1]
    codes = {line[:3] for line in lines}
    if len(codes) != 1 or not (code := codes.pop()).isdigit() or len(code) != 3:
        return None
    if code[:1] not in b"2345":  # RFC 5321 section 4.2.1: no other reply is SMTP
        return None
    text = b"\n".join(line[4:].strip(b" \t\r") for line in lines)
    return int(code), text.decode("utf-8", "surrogateescape")
