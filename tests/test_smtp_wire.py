"""The SMTP transport's own transaction code (engine/delivery/channels/wire.py) against a
scripted server on a loopback port that answers as a real one may: pipelined replies cut
anywhere, multiline replies, a 354 after a refused recipient, garbage, silence.

aiosmtpd (tests/smtp.py) covers the ordinary replies; this server exists for the framings
aiosmtpd never produces.
"""

import asyncio
import time
from dataclasses import dataclass, field

import pytest

from engine.delivery.channels.base import Outgoing
from engine.delivery.channels.smtp import SmtpSettings, SmtpTransport
from engine.errors import ConfigError, PermanentDeliveryError, TemporaryDeliveryError
from engine.models import Channel
from tests.loopserver import LoopServer

MAIL = b"From: a@example.com\r\nTo: b@example.com\r\nSubject: hi\r\n\r\n.line\r\nbody\r\n"
EHLO = b"250-scripted\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n"


@dataclass
class Script:
    """How the server answers. `cut` splits every reply into chunks of that many bytes
    (each its own write, with a pause between); `ehlo` is what it offers."""

    ehlo: bytes = EHLO
    rcpt: bytes = b"250 2.1.5 OK\r\n"
    data: bytes = b"354 go ahead\r\n"
    end: bytes = b"250 2.0.0 OK queued as Q1\r\n"
    cut: int = 0
    hang_up: bool = False  # close the connection instead of answering the message
    hang_up_at: bytes = b""  # a verb (b"DATA"): close the connection instead of answering it
    reset_after_354: bool = False  # say 354, then reset the connection, reading nothing
    drip: float = 0.0  # seconds between the bytes of the reply to the message
    filter_s: float = 0.0  # seconds before replying to the message (a content filter)
    quit: bytes = b"221 bye\r\n"  # b"": never answer QUIT
    commands: list[bytes] = field(default_factory=list)  # every command line, in order
    messages: list[bytes] = field(default_factory=list)  # every message, unstuffed
    packets: list[bytes] = field(default_factory=list)  # what each read of the socket got


class ScriptedServer(LoopServer):
    name = "scripted SMTP server"

    def __init__(self, script: Script) -> None:
        super().__init__()
        self.script = script

    async def _start(self) -> asyncio.Server:
        return await asyncio.start_server(self._session, "127.0.0.1", 0)

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self._converse(reader, writer)
        finally:
            writer.close()  # also when the test's end cancels a session still reading

    async def _converse(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        s = self.script

        async def say(reply: bytes) -> None:
            step = s.cut or len(reply) or 1
            for i in range(0, len(reply), step):
                writer.write(reply[i : i + step])
                await writer.drain()
                if s.cut:
                    await asyncio.sleep(0.002)

        await say(b"220 scripted ESMTP\r\n")
        pending = b""
        while True:
            chunk = await reader.read(65536)
            if not chunk:
                break
            s.packets.append(chunk)
            pending += chunk
            while b"\r\n" in pending:
                line, pending = pending.split(b"\r\n", 1)
                s.commands.append(line)
                verb = line[:4].upper()
                if verb == s.hang_up_at:
                    return
                if verb == b"EHLO":
                    await say(s.ehlo)
                elif verb == b"RCPT":
                    await say(s.rcpt)
                elif verb == b"DATA":
                    await say(s.data)
                    if s.reset_after_354:
                        writer.transport.abort()
                        return
                    if s.data.startswith(b"354"):
                        while b"\r\n.\r\n" not in b"\r\n" + pending:
                            if not (chunk := await reader.read(65536)):
                                return  # the client left in the middle of a message
                            s.packets.append(chunk)
                            pending += chunk
                        body, pending = (b"\r\n" + pending).split(b"\r\n.\r\n", 1)
                        text = body[2:] + b"\r\n" if body else b""
                        s.messages.append(text.replace(b"\r\n..", b"\r\n."))
                        if s.hang_up:
                            return
                        await asyncio.sleep(s.filter_s)
                        if s.drip:
                            for i in range(len(s.end)):
                                await asyncio.sleep(s.drip)
                                writer.write(s.end[i : i + 1])
                            continue
                        await say(s.end)
                elif verb == b"QUIT":
                    if not s.quit:
                        continue  # silence: the client gives up when its timeout runs out
                    await say(s.quit)
                    return
                else:  # MAIL, RSET, NOOP
                    await say(b"250 2.0.0 OK\r\n")


def run(
    script: Script,
    count: int = 1,
    timeout: float = 5.0,
    recipient: str = "b@example.com",
    data: bytes = MAIL,
    data_timeout: float | None = None,
) -> list[object]:
    """Send `count` messages over one connection; each one's receipt or error. The reply
    to each message is awaited `data_timeout` seconds, by default `timeout`."""
    outcomes: list[object] = []
    with ScriptedServer(script) as server:
        url = (
            f"smtp://127.0.0.1:{server.port}?tls=none&timeout={timeout}"
            f"&data_timeout={data_timeout or timeout}"
        )
        transport = SmtpTransport(SmtpSettings.from_url(url), concurrency=1)
        message = Outgoing(1, "u1", Channel.EMAIL, "<m@x>", "a@example.com", recipient, data)

        async def go() -> None:
            try:
                for _ in range(count):
                    try:
                        outcomes.append(await transport.send(message))
                    except (PermanentDeliveryError, TemporaryDeliveryError) as exc:
                        outcomes.append(exc)
            finally:
                await transport.close()

        asyncio.run(go())
    return outcomes


def replies(outcomes: list[object]) -> list[str]:
    return [getattr(o, "reply", None) or f"{type(o).__name__}: {o}" for o in outcomes]


def test_mail_rcpt_and_data_go_in_one_write_where_pipelining_is_offered():
    script = Script()
    assert replies(run(script)) == ["250 2.0.0 OK queued as Q1"]
    assert script.messages == [MAIL]
    assert b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n" in script.packets


def test_without_pipelining_each_command_waits_for_its_reply():
    script = Script(ehlo=b"250-scripted\r\n250 8BITMIME\r\n", cut=3)
    assert replies(run(script)) == ["250 2.0.0 OK queued as Q1"]
    assert not any(p.count(b"\r\n") > 1 and b"MAIL" in p for p in script.packets)
    assert script.messages == [MAIL]


def test_replies_cut_anywhere_and_multiline_replies_are_read_whole():
    script = Script(end=b"250-2.0.0 accepted\r\n250 2.0.0 queued as Q7\r\n", cut=1)
    assert replies(run(script, count=2)) == ["250 2.0.0 accepted\n2.0.0 queued as Q7"] * 2
    assert script.messages == [MAIL, MAIL]


@pytest.mark.parametrize(
    ("rcpt", "end"),
    [
        (b"250 OK\r\n", b"251 2.0.0 accepted, will forward\r\n"),
        (b"252 2.1.5 cannot verify, will try\r\n", b"250 2.0.0 OK queued as Q1\r\n"),
    ],
)
def test_any_25x_is_an_acceptance(rcpt, end):
    """A server that takes the recipient or the message with a 25x other than 250 has
    taken it (RFC 5321 section 4.2.1): marking it failed would plan the fallback for a
    user already notified, and lose its evidence."""
    script = Script(rcpt=rcpt, end=end)
    assert replies(run(script, count=2)) == [end.decode().strip()] * 2
    assert script.messages == [MAIL, MAIL]
    assert b"RSET" not in script.commands


@pytest.mark.parametrize(
    "script",
    [
        Script(end=b"221 2.0.0 bye\r\n"),  # closes the connection: not the message taken
        Script(rcpt=b"354 go ahead\r\n"),  # a reply that fits no RCPT
    ],
)
def test_a_reply_that_fits_no_command_is_tried_again_not_failed(script):
    """Neither takes nor refuses: the user is not failed for the server's confusion (only
    a 5xx is permanent), and nothing counts as sent."""
    (outcome,) = run(script)
    assert type(outcome) is TemporaryDeliveryError, outcome


@pytest.mark.parametrize(
    ("rcpt", "data", "error", "empty"),
    [
        # a compliant server refuses DATA when no recipient was accepted
        (b"550 5.1.1 no such user\r\n", b"554 5.5.1 no valid recipients\r\n", "550", False),
        # one that says 354 anyway gets an empty message, ended at once
        (b"550 5.1.1 no such user\r\n", b"354 go ahead\r\n", "550", True),
        (b"452 4.2.2 mailbox full\r\n", b"554 5.5.1 no valid recipients\r\n", "452", False),
        (b"250 OK\r\n", b"451 4.3.0 try later\r\n", "451", False),
    ],
)
def test_a_refused_transaction_is_reset_and_the_connection_serves_the_next(
    rcpt, data, error, empty
):
    script = Script(rcpt=rcpt, data=data)
    first, second = run(script, count=2)
    kind = TemporaryDeliveryError if error.startswith("4") else PermanentDeliveryError
    assert isinstance(first, kind), first
    assert str(first).startswith(error)
    assert isinstance(second, kind)  # the same answer, on the same connection
    assert sum(c.startswith(b"EHLO") for c in script.commands) == 1
    assert script.commands.count(b"RSET") == 2
    assert script.messages == ([b"", b""] if empty else [])


@pytest.mark.parametrize(
    ("end", "why"),
    [
        (b"hello there\r\n", "Malformed SMTP reply"),  # garbage: the session is unusable
        (b"999 what\r\n", "Malformed SMTP reply"),  # no such code: neither 4xx nor 5xx
        (b"100 wait\r\n", "Malformed SMTP reply"),  # SMTP has no 1xx replies
        (b"", "Timed out waiting for server response"),  # silence after the message
    ],
)
def test_a_garbled_or_silent_server_is_a_lost_connection_and_the_next_send_reconnects(end, why):
    script = Script(end=end)
    first, second = run(script, count=2, timeout=0.5)
    for outcome in (first, second):
        assert isinstance(outcome, TemporaryDeliveryError), outcome
        assert why in str(outcome)
    assert sum(c.startswith(b"EHLO") for c in script.commands) == 2
    assert script.messages == [MAIL, MAIL]


def test_a_server_that_hangs_up_after_the_message_is_a_lost_connection():
    script = Script(end=b"", hang_up=True)
    first, second = run(script, count=2)
    for outcome in (first, second):
        assert isinstance(outcome, TemporaryDeliveryError), outcome
        assert "connection lost" in str(outcome).lower() or "EOF" in str(outcome)
        assert outcome.maybe_delivered  # it has the message: a resend may duplicate it
    assert script.messages == [MAIL, MAIL]


@pytest.mark.parametrize(
    ("script", "maybe"),
    [
        (Script(end=b""), True),  # silence after the message: it may have been taken
        (Script(end=b"451 4.3.0 try later\r\n"), False),  # refused: not taken
        (Script(data=b"451 4.3.0 try later\r\n"), False),  # the message never went
        (Script(hang_up_at=b"DATA"), False),  # lost before DATA was answered
        # the end of the message never left: the server reset the connection after 354
        # and read none of 20 MB, which no socket buffer holds
        (Script(reset_after_354=True), False),
    ],
)
def test_only_a_message_sent_and_unanswered_may_have_been_delivered(script, maybe):
    data = MAIL + (b"x" * 998 + b"\r\n") * 20_000 if script.reset_after_354 else MAIL
    (outcome,) = run(script, timeout=0.5, data=data)
    assert isinstance(outcome, TemporaryDeliveryError), outcome
    assert outcome.maybe_delivered is maybe


@pytest.mark.parametrize(
    "recipient",
    [
        "b@example.com>\r\nRCPT TO:<evil@example.com",  # a second command smuggled in
        "b\x00@example.com",
        '"b\r\nx"@example.com',
    ],
)
def test_an_address_that_would_change_the_command_is_refused_and_nothing_is_sent(recipient):
    script = Script()
    (outcome,) = run(script, recipient=recipient)
    assert isinstance(outcome, PermanentDeliveryError), outcome
    assert "cannot send to this address" in str(outcome)
    assert not [c for c in script.commands if c.startswith((b"MAIL", b"RCPT", b"DATA"))]
    assert not any(b"evil" in p for p in script.packets)


def test_an_address_with_text_around_it_goes_as_the_address_alone():
    """As aiosmtplib parses it: what follows the address cannot become an ESMTP parameter."""
    script = Script()
    assert replies(run(script, recipient="b@example.com> NOTIFY=NEVER"))[0].startswith("250")
    assert b"RCPT TO:<b@example.com>" in script.commands
    assert not any(b"NOTIFY" in p for p in script.packets)


def test_a_reply_before_the_message_is_not_taken_as_its_acceptance():
    """A server (or anyone on a clear-text path) that says 250 right after its 354, before
    the message, must not have the message recorded as sent: here the server's real
    verdict, after the final dot, is a refusal."""
    script = Script(
        data=b"354 go ahead\r\n250 2.0.0 OK queued as EARLY\r\n",
        end=b"554 5.6.0 message refused\r\n",
    )
    (outcome,) = run(script)
    assert isinstance(outcome, TemporaryDeliveryError), outcome
    assert "Unsolicited SMTP reply" in str(outcome)


def test_a_reply_nobody_asked_for_ends_the_session_and_is_never_paired_with_a_command():
    """An extra reply after the message's: before, it answered the next MAIL, every reply
    after it was one command late, and the next message failed permanently on a '250'."""
    script = Script(end=b"250 2.0.0 OK queued as Q1\r\n250 2.0.0 and one more\r\n")
    assert replies(run(script, count=2)) == ["250 2.0.0 OK queued as Q1"] * 2
    assert sum(c.startswith(b"EHLO") for c in script.commands) == 2
    assert script.messages == [MAIL, MAIL]


def test_a_reply_that_trickles_in_times_out_as_a_whole():
    """timeout= bounds the wait for each reply, as aiosmtplib's did, not the gap between
    two of its bytes: a server dripping a byte every 0.1 s is silent for the session."""
    script = Script(drip=0.1)
    started = time.monotonic()
    (outcome,) = run(script, timeout=0.5)
    assert isinstance(outcome, TemporaryDeliveryError), outcome
    assert "Timed out waiting for server response" in str(outcome)
    assert time.monotonic() - started < 2.0


def test_a_content_filter_slower_than_a_command_reply_is_awaited_not_duplicated():
    """The reply to a whole message gets `data_timeout` (RFC 5321 section 4.5.3.2.6: a
    filter may run then), not the commands' `timeout`: a server that takes 1 s to accept
    is a delivery, where with 0.3 s it would be a retry that may duplicate the notice."""
    script = Script(filter_s=1.0)
    assert replies(run(script, timeout=0.3, data_timeout=3))[0].startswith("250")
    (late,) = run(Script(filter_s=1.0), timeout=0.3, data_timeout=0.3)
    assert isinstance(late, TemporaryDeliveryError), late
    assert late.maybe_delivered
    assert SmtpSettings.from_url("smtp://127.0.0.1:25?tls=none").data_timeout_s == 120


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("data_timeout=0", "data_timeout"),
        ("data_timeout=-5", "data_timeout"),
        ("data_timeout=nan", "data_timeout"),
        ("data_timeout=600", "data_timeout"),  # past what a claim's lease outlasts
        ("data_timeout=soon", "data_timeout"),
        ("timeout=0", "timeout"),
        ("timeout=inf", "timeout"),
    ],
)
def test_a_wait_that_is_no_number_of_seconds_is_refused_naming_the_option(query, named):
    with pytest.raises(ConfigError, match=f"HERALD_SMTP_URL: {named} must be a number of seconds"):
        SmtpSettings.from_url(f"smtp://127.0.0.1:25?tls=none&{query}")


@pytest.mark.parametrize(
    "body",
    [
        b"line\n.\nRSET\r\n",  # a bare LF before and after a period
        b"line\r\n.\nMAIL FROM:<x@example.com>\r\n",
        b"line\r.\r\n",  # a bare CR
    ],
    ids=["lf-dot-lf", "crlf-dot-lf", "bare-cr"],
)
def test_no_bare_line_feed_reaches_the_server_whatever_the_message_claims(body):
    """A bare LF is how a message smuggles a second one past a server that ends DATA on
    <LF>.<LF> (CVE-2023-51764: Postfix with smtpd_forbid_bare_newline=no, the
    installed 3.7's default); RFC 5321 forbids it. mime.build_email ends every line with
    CRLF (tests/test_mime.py); should a message ever not, the session still sends CRLF only."""
    data = b"From: a@example.com\r\nTo: b@example.com\r\nSubject: hi\r\n\r\n" + body
    script = Script()
    assert replies(run(script, data=data))[0].startswith("250")
    sent = b"".join(script.packets)
    assert b"Subject: hi" in sent
    assert sent.count(b"\n") == sent.count(b"\r\n") == sent.count(b"\r")


def test_closing_waits_for_a_silent_server_once_not_once_per_connection():
    """QUIT goes to every connection at once: a server that never answers it costs one
    timeout at the end of a run, not one per connection."""
    script = Script(quit=b"")
    with ScriptedServer(script) as server:
        url = f"smtp://127.0.0.1:{server.port}?tls=none&timeout=0.5"
        transport = SmtpTransport(SmtpSettings.from_url(url), concurrency=4)
        message = Outgoing(1, "u1", Channel.EMAIL, "<m@x>", "a@example.com", "b@example.com", MAIL)

        async def go() -> float:
            await asyncio.gather(*(transport.send(message) for _ in range(4)))
            started = time.monotonic()
            await transport.close()
            return time.monotonic() - started

        took = asyncio.run(go())
    assert sum(c.startswith(b"EHLO") for c in script.commands) == 4
    assert script.commands.count(b"QUIT") == 4
    assert 0.4 < took < 1.5, took
