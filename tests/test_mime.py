"""Smaller messages: 8bit where the server offers 8BITMIME, else quoted-printable or base64,
and a reader that takes only 7-bit decodes exactly what was rendered.

End to end through a real aiosmtpd (with and without 8BITMIME) and the outbox; the
decoded subject, text and HTML must hash to the content_sha256 recorded at send time,
which is the hash of what the renderer produced.
"""

import email
import email.policy
import hashlib
import re
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from engine.delivery.mime import build_email, encode_address, seven_bit
from tests.conftest import ROOT
from tests.smtp import Mailbox, serve

USERS = str(ROOT / "tests" / "users.csv")


class RawMailbox(Mailbox):
    """Keeps the bytes as they came over the wire and the MAIL FROM options."""

    def __init__(self) -> None:
        super().__init__()
        self.raw: list[tuple[bytes, list[str]]] = []

    async def handle_DATA(self, server, session, envelope) -> str:
        self.raw.append((envelope.original_content, list(envelope.mail_options)))
        return f"250 2.0.0 OK queued as Q{len(self.raw)}"


def _recorded(herald) -> dict[str, str]:
    with herald.database().connect() as conn:
        rows = conn.execute(text("SELECT message_id, content_sha256 FROM delivery"))
        return {r[0]: r[1] for r in rows if r[0]}


def _decoded_hash(data: bytes) -> str:
    """What a MIME reader shows, hashed the way packing.content_sha256 hashes the render."""
    mail = email.message_from_bytes(data, policy=email.policy.default)
    digest = hashlib.sha256(str(mail["Subject"]).encode())
    for kind in ("plain", "html"):
        body = mail.get_body((kind,))
        assert body is not None
        digest.update(b"\0")
        # MIME text travels with CRLF line ends (RFC 2046 4.1.1); the render has LF.
        digest.update(body.get_content().replace("\r\n", "\n").encode())
    return digest.hexdigest()


def _assert_seven_bit(data: bytes) -> None:
    assert data.isascii()
    assert b"\n" not in data.replace(b"\r\n", b"")  # CRLF only
    assert max(len(line) for line in data.split(b"\r\n")) < 998
    assert b"8bit" not in data


def _check_all(herald, messages: list[bytes]) -> None:
    recorded = _recorded(herald)
    assert len(messages) == 5  # the five EU/EEA/UK users with an address
    for data in messages:
        message_id = re.search(rb"^Message-ID: (\S+)\r$", data, re.M)
        assert message_id is not None
        assert _decoded_hash(data) == recorded[message_id.group(1).decode()]


def _send(herald, smtp: str | None) -> None:
    assert herald("users", "import", USERS).exit_code == 0
    assert herald("plan", "ai-training-notice").exit_code == 0
    result = herald("send", "ai-training-notice", "--max-wait", "5", smtp=smtp)
    assert result.exit_code == 0, result.output


def test_a_server_without_8bitmime_gets_seven_bit_that_decodes_to_the_render(herald):
    mailbox = RawMailbox()
    for server in serve(mailbox, decode_data=True):  # aiosmtpd then offers no 8BITMIME
        _send(herald, server.url)
    messages = [data for data, _ in mailbox.raw]
    for data, options in mailbox.raw:
        assert "BODY=8BITMIME" not in options
        _assert_seven_bit(data)
    assert any(b"quoted-printable" in data for data in messages)
    _check_all(herald, messages)


def test_a_server_with_8bitmime_gets_8bit_text_at_about_half_the_base64_size(herald):
    mailbox = RawMailbox()
    for server in serve(mailbox):
        _send(herald, server.url)
    messages = [data for data, _ in mailbox.raw]
    eight = [(data, options) for data, options in mailbox.raw if not data.isascii()]
    assert eight, "the German, Polish and Greek notices carry non-ASCII text"
    for data, options in eight:
        assert "BODY=8BITMIME" in options
        assert b"Content-Transfer-Encoding: 8bit" in data
        assert max(len(line) for line in data.split(b"\r\n")) < 998
    _check_all(herald, messages)
    german = next(d for d in messages if b"Content-Language: de" in d)
    mail = email.message_from_bytes(german, policy=email.policy.default)
    rendered = sum(len(p.get_content().encode()) for p in mail.walk() if not p.is_multipart())
    body = len(german) - german.index(b"\r\n\r\n")
    assert body < rendered + 400  # the text itself and part headers; base64 is 1.37 times


def test_outbox_files_are_seven_bit_and_decode_to_the_render(herald):
    _send(herald, None)
    files = sorted(Path("var/outbox").glob("*.eml"))
    messages = [f.read_bytes() for f in files]
    for data in messages:
        _assert_seven_bit(data)
    _check_all(herald, messages)


def _decoded(data: bytes, kind: str) -> str:
    body = email.message_from_bytes(data, policy=email.policy.default).get_body((kind,))
    assert body is not None
    return str(body.get_content()).replace("\r\n", "\n")


def _message(body: str, eight_bit: bool) -> bytes:
    return build_email(
        from_header="privacy@example.com",
        to_header="user@example.com",
        subject="Test",
        text=body,
        html=f"<p>{body}</p>",
        message_id="<0123abcd@example.com>",
        date="Wed, 22 May 2024 07:00:00 +0000",
        language="el",
        eight_bit=eight_bit,
    )


@pytest.mark.parametrize(
    ("body", "encoding"),
    [
        ("plain ASCII\nsecond line", b"7bit"),
        ("Grüße aus München, trailing space \n.dot at the start\nend", b"quoted-printable"),
        ("Ενημέρωση πολιτικής απορρήτου " * 20, b"base64"),  # QP would triple Greek
        ("x" * 1200, b"quoted-printable"),  # a line of 998 octets or more is never sent bare
        ("a lone\rcarriage return", b"base64"),
    ],
)
def test_each_part_takes_the_smallest_encoding_a_seven_bit_reader_decodes(body, encoding):
    data = _message(body, eight_bit=False)
    _assert_seven_bit(data)
    assert b"Content-Transfer-Encoding: " + encoding in data
    assert _decoded(data, "plain") == body
    assert _decoded(data, "html") == f"<p>{body}</p>"


def test_seven_bit_turns_an_8bit_message_into_one_that_decodes_the_same():
    body = "Grüße, Ελένη,\nÜberprüfung " * 30
    eight = _message(body, eight_bit=True)
    assert b"Content-Transfer-Encoding: 8bit" in eight
    seven = seven_bit(eight)
    _assert_seven_bit(seven)
    for data in (eight, seven):
        assert _decoded(data, "plain") == body
        assert _decoded(data, "html") == f"<p>{body}</p>"


def _email(**fields: Any) -> bytes:
    defaults: dict[str, Any] = {
        "from_header": "Privacy <privacy@example.com>",
        "to_header": "b@example.com",
        "subject": "hi",
        "text": "body\n",
        "html": "<p>body</p>\n",
        "message_id": "<m@example.com>",
        "date": "Mon, 30 Nov 2026 05:00:00 +0000",
        "language": "en",
        "eight_bit": True,
    }
    return build_email(**(defaults | fields))


def test_a_long_non_ascii_name_before_an_internationalised_address_folds_with_crlf():
    """The email package folds long encoded names with a bare LF unless told otherwise; a
    bare LF in a message is what SMTP smuggling feeds on."""
    name = "Ζωή Παπαδοπούλου-Καραγιαννοπούλου του Αλεξάνδρου " * 3
    data = _email(to_header=encode_address(name, "ζωή@παράδειγμα.ελ"), subject="Ενημέρωση")
    assert b"\r\n " in data  # it did fold
    assert data.count(b"\n") == data.count(b"\r\n") == data.count(b"\r")


def test_a_reply_to_with_a_line_break_is_never_a_header():
    with pytest.raises(ValueError, match="line break"):
        _email(reply_to="a@example.com\nBcc: all@example.com")
