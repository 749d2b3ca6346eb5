"""What the service accepts from a request, checked before use. Pure: no I/O.

Tokens, cursors and ids are validated here so that nothing a client sends reaches the
token signer or the database in a shape they cannot take; reasons are cleaned so that
any text a browser or a tool can send is stored (and the objection with it).
"""

import base64
import binascii
import re
from urllib.parse import parse_qsl

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

MAX_ID = 2**63 - 1  # the largest id either database stores
MAX_TOKEN = 200  # ours are ~50 characters; anything longer is not worth verifying
MAX_REASON = 10_000  # characters kept of a reason; a longer one is cut, never refused
MAX_FIELDS = 8  # the objection form has two (reason, lang)

_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,64}(?:\.[A-Za-z0-9_-]{1,64}){1,2}")
# Lone surrogates (a client that cut an emoji in half), NUL and the other C0 controls but
# tab and newline, DEL and the C1 controls: none can be shown, some cannot be stored.
_UNSTORABLE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")


class FormError(ValueError):
    """A form body that cannot be read as UTF-8 text fields."""


def valid_token(token: str) -> bool:
    """Whether `token` has the shape of one of ours (checked before its signature)."""
    return len(token) <= MAX_TOKEN and _TOKEN.fullmatch(token) is not None


def clean_reason(reason: str | None) -> str | None:
    """The reason as stored: one kind of line break, no characters that cannot be shown
    or stored, at most MAX_REASON characters; None if nothing is left."""
    text = (reason or "").replace("\r\n", "\n").replace("\r", "\n")
    return _UNSTORABLE.sub("", text).strip()[:MAX_REASON] or None


def clean_text(value: str) -> str:
    """Any other text from a request (a user id), with what cannot be stored removed."""
    return _UNSTORABLE.sub("", value)


def parse_urlencoded(body: bytes) -> dict[str, str]:
    """The fields of an application/x-www-form-urlencoded body, decoded strictly as
    UTF-8. Raises FormError for bytes that are not, or for too many fields."""
    try:
        pairs = parse_qsl(
            body.decode("ascii"),
            keep_blank_values=True,
            encoding="utf-8",
            errors="strict",
            max_num_fields=MAX_FIELDS,
        )
    except (UnicodeDecodeError, ValueError) as exc:
        raise FormError(str(exc)) from exc
    return dict(pairs)


def decode_field(value: bytes) -> str:
    """A multipart field's bytes as text. Raises FormError if they are not UTF-8."""
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FormError(str(exc)) from exc


def encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(f"before:{last_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int | None:
    """The id a cursor this API gave out points before; None for anything else."""
    if len(cursor) > 64 or not cursor.isascii():
        return None
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, ValueError):  # UnicodeDecodeError is a ValueError
        return None
    prefix, _, number = text.partition(":")
    if prefix != "before" or not re.fullmatch(r"[0-9]{1,19}", number):
        return None
    value = int(number)
    return value if 1 <= value <= MAX_ID else None


def parse_multipart(body: bytes, content_type: str, max_part_size: int) -> dict[str, str]:
    """The text fields of a multipart/form-data body (files are ignored), decoded
    strictly as UTF-8. Raises FormError for a malformed body, bytes that are not UTF-8,
    a part over `max_part_size` bytes or more than MAX_FIELDS fields."""
    _, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if not boundary:
        raise FormError("multipart body without a boundary")
    parts: list[tuple[bytes, bytearray]] = []
    header: dict[str, bytes] = {"name": b"", "value": b"", "disposition": b""}

    def begin() -> None:
        if len(parts) >= MAX_FIELDS:
            raise FormError(f"more than {MAX_FIELDS} fields")
        header["disposition"] = b""
        parts.append((b"", bytearray()))

    def data(chunk: bytes, start: int, end: int) -> None:
        kept = parts[-1][1]
        if len(kept) + end - start > max_part_size:
            raise FormError(f"a field of more than {max_part_size} bytes")
        kept.extend(chunk[start:end])

    def field(chunk: bytes, start: int, end: int) -> None:
        header["name"] += chunk[start:end]

    def value(chunk: bytes, start: int, end: int) -> None:
        header["value"] += chunk[start:end]

    def header_end() -> None:
        if header["name"].lower() == b"content-disposition":
            header["disposition"] = header["value"]
        header["name"] = header["value"] = b""

    def headers_done() -> None:
        parts[-1] = (header["disposition"], parts[-1][1])

    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": begin,
            "on_part_data": data,
            "on_header_field": field,
            "on_header_value": value,
            "on_header_end": header_end,
            "on_headers_finished": headers_done,
        },
    )
    try:
        parser.write(body)
        parser.finalize()
    except MultipartParseError as exc:
        raise FormError(str(exc)) from exc
    fields = {}
    for disposition, content in parts:
        _, options = parse_options_header(disposition)
        if b"name" in options and b"filename" not in options:
            fields[decode_field(options[b"name"])] = decode_field(bytes(content))
    return fields
