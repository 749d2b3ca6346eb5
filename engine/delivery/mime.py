"""Email bytes: a multipart/alternative message built from rendered parts. Pure.

Built by hand from a fixed skeleton rather than with email.message.EmailMessage, which
costs ~1.8 ms a message (DESIGN section 12); every header value that can carry user data
goes through the standard library's RFC 2047 encoders, and none may hold CR or LF.

Each body part takes the smallest encoding the receiver can read (DESIGN section 12):
- `7bit`: ASCII text with every line under 998 octets, as is;
- `8bit`: other text, as is, when the SMTP server offers 8BITMIME (RFC 6152);
- else `quoted-printable` (binascii.b2a_qp, in C), or `base64` where that is smaller
  (mostly non-Latin scripts). A German notice is about half its base64 size.
Line ends are CRLF in every case. `seven_bit()` turns an 8-bit message back into one a
7-bit server takes, for a connection that turns out not to offer 8BITMIME.
"""

import base64
import binascii
import datetime as dt
import email.utils
import functools
import re
from email.header import Header
from email.headerregistry import Address

CRLF = b"\r\n"


class HeaderInjectionError(ValueError):
    """A header value held a line break; it is never sent."""


def _safe(value: str) -> str:
    if "\r" in value or "\n" in value:
        raise HeaderInjectionError(f"line break in header value {value[:40]!r}")
    return value


@functools.lru_cache(maxsize=1024)
def encode_text_header(value: str) -> str:
    """An unstructured header (Subject): ASCII as is, else RFC 2047 UTF-8, folded."""
    _safe(value)
    if value.isascii() and len(value) < 900:
        return value
    return Header(value, "utf-8", header_name="Subject").encode(linesep="\r\n")


def encode_address(name: str | None, address: str) -> str:
    """`Name <addr>` with the name RFC 2047-encoded when it is not plain ASCII."""
    _safe(address)
    if not name:
        return address
    if address.isascii() and not name.isascii():
        raw = _safe(name).encode("utf-8")
        if len(raw) <= 45:  # one encoded-word of at most 75 characters (RFC 2047 section 2)
            # what formataddr makes of it, without the email.header machinery that sizes
            # both Q and B encodings first (~30 µs a message)
            return f"=?utf-8?b?{base64.b64encode(raw).decode()}?= <{address}>"
    if address.isascii():
        return email.utils.formataddr((_safe(name), address), charset="utf-8")
    # An internationalised address (RFC 6532) goes as UTF-8; only the name is encoded.
    encoded = Header(_safe(name), "utf-8").encode(linesep="\r\n")  # the default is LF
    return f"{encoded} <{address}>"


def parse_sender(value: str) -> tuple[str, str]:
    """('Privacy Team', 'privacy@example.com') from a From value."""
    name, address = email.utils.parseaddr(_safe(value))
    if "@" not in address:
        raise ValueError(f"not an email address: {value!r}")
    return name, address


def domain_of(address: str) -> str:
    return Address(addr_spec=address).domain or "localhost"


MAX_LINE = 998  # octets, CRLF excluded (RFC 5322 section 2.1.1)
_EIGHT_BIT_PART = re.compile(
    rb"(Content-Transfer-Encoding: )8bit\r\n\r\n(.*?)\r\n(?=--=_herald_)", re.DOTALL
)


def _base64(raw: bytes) -> bytes:
    """Base64 in 76-character lines. One C call and slicing: base64.encodebytes loops
    in Python over 57-byte chunks and costs ~6x more."""
    encoded = base64.b64encode(raw)
    return b"".join(encoded[i : i + 76] + CRLF for i in range(0, len(encoded), 76))


def _seven_bit_body(raw: bytes) -> tuple[str, bytes]:
    """Quoted-printable, or base64 where that is smaller (mostly non-Latin text)."""
    # b2a_qp breaks lines at 76 with the input's first line end: CRLF, or LF if it has none.
    quoted = binascii.b2a_qp(raw, istext=True)
    if CRLF not in raw:
        quoted = quoted.replace(b"\n", CRLF)
    if len(quoted) <= len(raw) * 4 // 3 + len(raw) // 38:  # base64's size with its CRLFs
        return "quoted-printable", quoted + CRLF
    return "base64", _base64(raw)


def _body(content: str, eight_bit: bool) -> tuple[str, bytes]:
    """(Content-Transfer-Encoding, body) for one text part. The body ends with the CRLF
    that belongs to the boundary after it, so it decodes to `content` exactly, with its
    line ends in MIME's canonical CRLF (RFC 2046 section 4.1.1)."""
    if "\r" in content:  # rendered text has none; the search is ~100x cheaper than replace
        content = content.replace("\r\n", "\n")
    raw = content.encode("utf-8")
    if b"\r" in raw:  # a lone CR cannot go as text: base64 keeps it exactly
        return "base64", _base64(raw)
    raw = raw.replace(b"\n", CRLF)
    # split + map(len) run in C; a regex like [^\r\n]{998} rescans every line from each
    # position and cost ~170 µs a message (measured with bench/profile_send.py)
    if max(map(len, raw.split(CRLF))) <= MAX_LINE:
        if raw.isascii():
            return "7bit", raw + CRLF
        if eight_bit:
            return "8bit", raw + CRLF
    return _seven_bit_body(raw)


def seven_bit(data: bytes) -> bytes:
    """A message from build_email(eight_bit=True) with its 8bit parts made 7-bit, for a
    server without 8BITMIME. The parts end at our boundary, which cannot occur in them."""

    def encode(match: re.Match[bytes]) -> bytes:
        cte, body = _seven_bit_body(match.group(2))
        return match.group(1) + cte.encode() + CRLF + CRLF + body

    return _EIGHT_BIT_PART.sub(encode, data)


def build_email(
    *,
    from_header: str,
    to_header: str,
    subject: str,
    text: str,
    html: str,
    message_id: str,
    date: str,
    language: str,
    reply_to: str | None = None,
    eight_bit: bool = False,
) -> bytes:
    """The message as sent. `from_header`/`to_header` come from encode_address().

    With `eight_bit`, non-ASCII parts go as 8bit: send it with BODY=8BITMIME, or
    through seven_bit() to a server that does not offer 8BITMIME."""
    boundary = f"=_herald_{message_id.strip('<>').split('@')[0]}"
    headers = [
        f"From: {from_header}",
        f"To: {to_header}",
        f"Subject: {encode_text_header(subject)}",
        f"Date: {date}",
        f"Message-ID: {message_id}",
        f"Content-Language: {language}",
        "MIME-Version: 1.0",
        "Auto-Submitted: auto-generated",
        f'Content-Type: multipart/alternative; boundary="{boundary}"',
    ]
    if reply_to:
        headers.insert(2, f"Reply-To: {_safe(reply_to)}")
    part = (
        f'--{boundary}\r\nContent-Type: text/%s; charset="utf-8"\r\n'
        "Content-Transfer-Encoding: %s\r\n\r\n"
    )
    text_cte, text_body = _body(text, eight_bit)
    html_cte, html_body = _body(html, eight_bit)
    return b"".join(
        [
            "\r\n".join(headers).encode("utf-8"),
            CRLF,
            CRLF,
            (part % ("plain", text_cte)).encode(),
            text_body,
            (part % ("html", html_cte)).encode(),
            html_body,
            f"--{boundary}--\r\n".encode(),
        ]
    )


@functools.lru_cache(maxsize=4)
def mail_date(second: int) -> str:
    """RFC 5322 date for a whole UTC second (cached: a batch shares a few seconds)."""
    return email.utils.format_datetime(dt.datetime.fromtimestamp(second, dt.UTC))
