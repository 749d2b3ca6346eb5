"""Where users come from: CSV or JSONL files, validated row by row. Reads files; streams.

Each row becomes either a clean user record or a Rejection naming its line and reason;
a bad row never stops the good ones (unless the caller asks for --strict).
"""

import csv
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from email_validator import EmailNotValidError, validate_email

from engine.authoring.i18n import normalize_locale
from engine.authoring.regions import region_data
from engine.authoring.rendering import clean_field
from engine.models import Rejection, Row

FIELDS = ("id", "email", "name", "country", "locale", "timezone")
REQUIRED = ("id", "country")


class ImportFormatError(ValueError):
    """The file as a whole cannot be read (wrong header, unknown format)."""


def read_rows(path: Path, fmt: str | None = None) -> Iterator[Row | Rejection]:
    """Stream the file's rows, validated. Raises ImportFormatError, OSError."""
    fmt = fmt or ("jsonl" if path.suffix.lower() in (".jsonl", ".ndjson") else "csv")
    if fmt not in ("csv", "jsonl"):
        raise ImportFormatError(f"{path}: unknown format {fmt!r}; expected csv or jsonl")
    raw = _read_csv(path) if fmt == "csv" else _read_jsonl(path)
    for line, record in raw:
        yield record if isinstance(record, Rejection) else clean_row(line, record)


def lookalikes(names: Iterable[str]) -> list[str]:
    """Columns (or keys) that would be kept as attributes but look like one of FIELDS
    (`Email`, `e-mail`, `Time Zone`): the field would be silently empty."""
    plain = {_plain(f): f for f in FIELDS}
    return [
        f"{name!r} looks like {plain[_plain(name)]!r}"
        for name in names
        if name not in FIELDS and _plain(name) in plain
    ]


def _plain(name: str) -> str:
    return "".join(ch for ch in name.casefold() if ch.isalnum())


def clean_row(line: int, record: dict[str, Any]) -> Row | Rejection:
    """Validate one record: the user it describes, or why it is rejected."""
    wrong = lookalikes(record)
    if wrong:
        return Rejection(line, f"{'; '.join(wrong)}: keys are {', '.join(FIELDS)}", None)
    for field in FIELDS:
        if isinstance(record.get(field), dict | list | bool):
            return Rejection(line, f"{field} must be text, not {json.dumps(record[field])}", None)
    user_id = str(record.get("id") or "").strip()
    if not user_id or clean_field(user_id) != user_id:
        return Rejection(line, "missing or malformed id", user_id or None)
    email = str(record.get("email") or "").strip() or None
    if email is not None:
        try:
            checked = validate_email(email, check_deliverability=False)
            # Punycode for an internationalised domain; a non-ASCII local part stays
            # as it is and needs a server that speaks SMTPUTF8.
            email = checked.ascii_email or checked.normalized
        except EmailNotValidError as exc:
            return Rejection(line, f"bad email: {exc}", user_id)
    country = region_data().country_code(str(record.get("country") or ""))
    if country is None:
        return Rejection(line, f"unknown country {record.get('country')!r}", user_id)
    timezone = str(record.get("timezone") or "").strip() or None
    if timezone is not None and not _known_zone(timezone):
        return Rejection(line, f"unknown time zone {timezone!r}", user_id)
    locale = str(record.get("locale") or "").strip() or None
    if locale is not None:
        locale = normalize_locale(locale)
        if locale is None:
            return Rejection(line, f"unknown locale {record.get('locale')!r}", user_id)
    extra = {k: v for k, v in record.items() if k not in FIELDS and k}
    values = {
        "id": user_id,
        "email": email,
        "name": clean_field(str(record.get("name") or "")),
        "country": country,
        "locale": locale,
        "timezone": timezone,
        "attributes": json.dumps(extra, ensure_ascii=False, sort_keys=True),
    }
    return Row(line, values)


def _known_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _read_csv(path: Path) -> Iterator[tuple[int, dict[str, Any] | Rejection]]:
    with path.open(encoding="utf-8-sig", newline="") as fp:
        reader = csv.DictReader(fp)
        header = reader.fieldnames or []
        wrong = lookalikes(header)
        if wrong:
            raise ImportFormatError(
                f"{path}:1: column {'; column '.join(wrong)}: rename it, or its values would "
                f"be kept as an attribute and the field left empty (columns: "
                f"{', '.join(FIELDS)})"
            )
        missing = [f for f in REQUIRED if f not in header]
        if missing:
            raise ImportFormatError(
                f"{path}:1: the header lacks {', '.join(missing)}; expected columns "
                f"{', '.join(FIELDS)} (any others are kept as attributes)"
            )
        try:
            for record in reader:
                if None in record:  # more cells than header columns
                    yield reader.line_num, Rejection(reader.line_num, "more cells than columns")
                    continue
                yield reader.line_num, record
        except (csv.Error, UnicodeDecodeError) as exc:
            raise ImportFormatError(f"{path}:{reader.line_num + 1}: {exc}") from exc


def _read_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any] | Rejection]]:
    with path.open("rb") as fp:
        for line, raw in enumerate(fp, 1):
            try:
                text = raw.decode("utf-8-sig" if line == 1 else "utf-8")
            except UnicodeDecodeError:
                yield line, Rejection(line, "not UTF-8 text")
                continue
            if not text.strip():
                continue
            try:
                record = json.loads(text)
            except json.JSONDecodeError as exc:
                yield line, Rejection(line, f"not valid JSON: {exc.msg}")
                continue
            if not isinstance(record, dict):
                yield line, Rejection(line, "expected a JSON object")
                continue
            yield line, record
