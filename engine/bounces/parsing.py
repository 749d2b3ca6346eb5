"""What a message sent back to a return path says: a bounce, a delay, a complaint, an
auto-reply, or nothing we can act on. Pure: bytes in, a Bounce out.

In order: an ARF abuse report (RFC 5965), an RFC 3464 delivery-status report read with the
standard library, an auto-reply (RFC 3834 headers, the usual subjects), then the
heuristic detectors of flufl.bounce for the many MTAs that ignore RFC 3464.
"""

import email
import email.errors
import email.policy
import email.utils
import re
from dataclasses import dataclass
from email.message import Message
from enum import StrEnum
from typing import Any

from flufl.bounce import all_failures


class Kind(StrEnum):
    BOUNCED = "bounced"  # a permanent failure (5.x.x)
    DELAYED = "delayed"  # a transient one (4.x.x): recorded, the delivery stands
    COMPLAINT = "complaint"  # an ARF abuse report
    AUTOREPLY = "autoreply"  # out of office and friends: ignored
    UNRECOGNISED = "unrecognised"  # a message, but no bounce in it
    UNPARSEABLE = "unparseable"  # not a MIME message we can read


@dataclass(frozen=True, slots=True)
class Bounce:
    kind: Kind
    detector: str  # "arf", "rfc3464", "headers", "flufl", or "" when nothing matched
    recipients: tuple[str, ...] = ()  # original recipients the report names, lower case
    status: str | None = None  # enhanced status code, "5.1.1"
    diagnostic: str = ""  # the remote server's words; may hold addresses: redact first
    message_ids: tuple[str, ...] = ()  # Message-IDs of the original message, as quoted
    return_paths: tuple[str, ...] = ()  # Return-Path of the quoted original (a VERP)
    addressed_to: tuple[str, ...] = ()  # Delivered-To, X-Original-To, Envelope-To, To
    own_id: str = ""  # the report's own Message-ID: the same report read twice
    defect: str = ""  # why it is unparseable

    @property
    def reason(self) -> str:
        return reason_of(self.status)


# RFC 3463 subject classes; x.2.2 is worth telling apart (the user may come back).
_REASONS = {
    "1": "bad-address",
    "2": "mailbox",
    "3": "mail-system",
    "4": "routing",
    "5": "protocol",
    "6": "content",
    "7": "policy",
}
_STATUS = re.compile(r"(?<![\w.])([245])\.(\d{1,3})\.(\d{1,3})(?![\w.]*\d)")
_SMTP_REPLY = re.compile(r"\b([45]\d\d)[ -]([^\r\n]{0,300})")
_MESSAGE_ID = re.compile(r"^message-id:\s*(<[^>\s]{1,250}>)", re.IGNORECASE | re.MULTILINE)
_RETURN_PATH = re.compile(r"^return-path:\s*<([^>\s]{1,250})>", re.IGNORECASE | re.MULTILINE)
_AUTO_SUBJECT = re.compile(
    r"^\s*(out of (the )?office|automatic reply|auto(matic)?[- ]?(reply|response)|"
    r"autoreply|abwesenheit|r[ée]ponse automatique|vacation)",
    re.IGNORECASE,
)
_ADDRESSED = ("Delivered-To", "X-Original-To", "Envelope-To", "To")
_FATAL = (
    email.errors.NoBoundaryInMultipartDefect,
    email.errors.StartBoundaryNotFoundDefect,
    email.errors.MultipartInvariantViolationDefect,
)


def reason_of(status: str | None) -> str:
    if status is None:
        return "unknown"
    _, subject, detail = status.split(".")
    if subject == "2" and detail == "2":
        return "mailbox-full"
    return _REASONS.get(subject, "other")


def parse_bounce(data: bytes) -> Bounce:
    """Classify one message. Never raises for bad input: unreadable is a Kind."""
    try:
        message = email.message_from_bytes(data, policy=email.policy.compat32)
    except (ValueError, TypeError, LookupError, IndexError) as exc:
        return Bounce(Kind.UNPARSEABLE, "", defect=f"{type(exc).__name__}: {exc}")
    defect = _fatal_defect(message)
    if defect or not message.keys():
        return Bounce(Kind.UNPARSEABLE, "", defect=defect or "no header fields")
    text = _text_of(message)
    quoted = _quoted(message, text)
    if _is_report(message, "feedback-report"):
        return _complaint(message, quoted)
    if _is_report(message, "delivery-status"):
        found = _dsn(message, quoted)
        if found is not None:
            return found
    if _is_autoreply(message, strict=True):
        return Bounce(Kind.AUTOREPLY, "headers", **quoted)
    if "From" not in message:
        message["From"] = "<>"  # flufl's Yale detector indexes the From address
    try:
        temporary, permanent = all_failures(message)
    except (ValueError, TypeError, LookupError, AttributeError, UnicodeError) as exc:
        # flufl's heuristics walk the parts freely; a broken part is this message's fault
        return Bounce(Kind.UNPARSEABLE, "flufl", defect=f"{type(exc).__name__}: {exc}")
    if not (permanent or temporary):
        if _is_autoreply(message, strict=False):
            return Bounce(Kind.AUTOREPLY, "headers", **quoted)
        return Bounce(Kind.UNRECOGNISED, "", **quoted)
    kind = Kind.BOUNCED if permanent else Kind.DELAYED
    addresses = permanent or temporary
    status = _first_status(text, "5" if permanent else "4")
    return Bounce(
        kind,
        "flufl",
        recipients=tuple(sorted(a.decode("utf-8", "replace").lower() for a in addresses)),
        status=status or ("5.0.0" if permanent else "4.0.0"),
        diagnostic=_first_reply(text, status),
        **quoted,
    )


def _fatal_defect(message: Message) -> str:
    for part in message.walk():
        for defect in part.defects:
            if isinstance(defect, _FATAL):
                return type(defect).__name__
    return ""


def _is_report(message: Message, report_type: str) -> bool:
    return (
        message.get_content_type() == "multipart/report"
        and str(message.get_param("report-type", "")).lower() == report_type
    )


def _is_autoreply(message: Message, strict: bool) -> bool:
    """`strict`: only signs no bounce carries. MTAs mark their bounces Auto-Submitted:
    auto-replied too (RFC 3834), so that header counts only once no detector fired."""
    auto = str(message.get("Auto-Submitted", "no")).strip().lower()
    if not strict and auto.startswith("auto-replied"):
        return True
    if any(h in message for h in ("X-Autoreply", "X-Autorespond", "X-Autoresponder")):
        return True
    if str(message.get("Precedence", "")).strip().lower() == "auto_reply":
        return True
    return bool(_AUTO_SUBJECT.match(_header_text(message.get("Subject", ""))))


def _complaint(message: Message, quoted: dict[str, Any]) -> Bounce:
    recipients: list[str] = []
    for part in message.walk():
        if part.get_content_type() == "message/feedback-report":
            fields = _fields_of(part)
            for name in ("original-rcpt-to", "removal-recipient"):
                recipients += [_address(v) for v in fields.get(name, [])]
    return Bounce(Kind.COMPLAINT, "arf", recipients=tuple(r for r in recipients if r), **quoted)


def _dsn(message: Message, quoted: dict[str, Any]) -> Bounce | None:
    """The worst recipient outcome in a delivery-status part; None when it has none."""
    failed: list[tuple[str, str, str]] = []
    delayed: list[tuple[str, str, str]] = []
    for part in message.walk():
        if part.get_content_type() != "message/delivery-status":
            continue
        blocks = part.get_payload()
        for block in blocks[1:] if isinstance(blocks, list) else []:
            if not isinstance(block, Message):
                continue
            action = str(block.get("Action", "")).strip().lower()
            found = _STATUS.search(str(block.get("Status", "")))
            status = found.group(0) if found else None
            recipient = _address(
                str(block.get("Original-Recipient") or block.get("Final-Recipient") or "")
            )
            diagnostic = _header_text(block.get("Diagnostic-Code", ""))
            diagnostic = diagnostic.split(";", 1)[-1].strip()
            if action == "failed" or (status or "").startswith("5"):
                failed.append((recipient, status or "5.0.0", diagnostic))
            elif action == "delayed" or (status or "").startswith("4"):
                delayed.append((recipient, status or "4.0.0", diagnostic))
    chosen, kind = (failed, Kind.BOUNCED) if failed else (delayed, Kind.DELAYED)
    if not chosen:
        return None
    _, status, diagnostic = chosen[0]
    return Bounce(
        kind,
        "rfc3464",
        recipients=tuple(sorted({r for r, _, _ in chosen if r})),
        status=status,
        diagnostic=diagnostic[:500],
        **quoted,
    )


def _fields_of(part: Message) -> dict[str, list[str]]:
    """The fields of a report part, whether the parser made it a message or text."""
    payload = part.get_payload()
    blocks = payload if isinstance(payload, list) else []
    if not blocks:
        raw = part.get_payload(decode=True)
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(payload)
        blocks = [email.message_from_string(text)]
    fields: dict[str, list[str]] = {}
    for block in blocks:
        if isinstance(block, Message):
            for name, value in block.items():
                fields.setdefault(name.lower(), []).append(str(value))
    return fields


def _quoted(message: Message, text: str) -> dict[str, Any]:
    """Message-IDs and Return-Paths quoted from the original (not the report's own), and
    whom the report itself was addressed to."""
    own = str(message.get("Message-ID", "")).strip()
    ids = [m for m in _MESSAGE_ID.findall(text) if m != own]
    headers = [str(v) for h in _ADDRESSED for v in message.get_all(h, [])]
    return {
        "message_ids": tuple(dict.fromkeys(ids)),
        "return_paths": tuple(dict.fromkeys(p.lower() for p in _RETURN_PATH.findall(text))),
        "addressed_to": tuple(
            dict.fromkeys(a.lower() for _, a in email.utils.getaddresses(headers) if "@" in a)
        ),
        "own_id": own,
    }


def _text_of(message: Message, limit: int = 1_000_000) -> str:
    """Every text-like part and quoted header block, decoded, up to `limit` characters."""
    chunks: list[str] = []
    size = 0
    for part in message.walk():
        if part is message and message.is_multipart():
            continue
        ctype = part.get_content_type()
        if ctype.startswith("message/"):
            if ctype in ("message/rfc822", "message/global"):
                continue  # walk() visits the inner message's parts; its headers below
            raw = part.as_string() if not part.is_multipart() else ""
        elif part.get_content_maintype() == "text" or ctype == "application/octet-stream":
            payload = part.get_payload(decode=True)
            if not isinstance(payload, bytes):
                continue
            raw = _decode(payload, part.get_content_charset() or "utf-8")
        else:
            continue
        chunks.append(raw)
        size += len(raw)
        if size > limit:
            break
    for part in message.walk():
        if part.get_content_type() in ("message/rfc822", "message/global"):
            inner = part.get_payload()
            if isinstance(inner, list) and inner and isinstance(inner[0], Message):
                chunks.append("".join(f"{k}: {v}\n" for k, v in inner[0].items()))
    return "\n".join(chunks)[:limit]


def _decode(payload: bytes, charset: str) -> str:
    try:
        return payload.decode(charset, "replace")
    except LookupError:  # a charset Python does not know: keep the ASCII that matters
        return payload.decode("latin-1")


def _first_status(text: str, klass: str) -> str | None:
    for found in _STATUS.finditer(text):
        if found.group(1) == klass:
            return found.group(0)
    return None


def _first_reply(text: str, status: str | None) -> str:
    if status:
        for line in text.splitlines():
            if status in line:
                return line.strip()[:500]
    found = _SMTP_REPLY.search(text)
    return found.group(0).strip()[:500] if found else ""


def _address(value: str) -> str:
    value = value.split(";", 1)[-1].strip().strip("<>").strip()
    return value.lower() if "@" in value else ""


def _header_text(value: object) -> str:
    return " ".join(str(value).split())
