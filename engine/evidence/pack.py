"""`herald evidence export`: a self-contained evidence pack for one campaign. I/O: database,
files.

The pack is what leaves the sender's hands: the events, the signed checkpoints, one line
per recipient, the exact spec, the report, a signed manifest and a stand-alone verifier,
with no address, name, IP, reason text or token. Everything is streamed, so a campaign of
a million users exports in the same memory as one of a thousand.
"""

import datetime as dt
import hashlib
import importlib.resources
import json
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text

from engine.authoring.specs import restore, spec_folder
from engine.canonical import FORMAT, canonical
from engine.config import Settings
from engine.errors import EngineError, Problem
from engine.evidence.checkpoints import KEYS_FILE, Signer, b64, checkpoint_file, whole_lines
from engine.evidence.report import campaign_report
from engine.evidence.reportpage import render_report_html
from engine.evidence.signing import signer_for
from engine.evidence.verify import evidence_status
from engine.store import campaigns as campaign_store
from engine.store.events import iso, iter_events

MANIFEST_CONTEXT = b"herald manifest v1\n"
_RECIPIENTS = text(
    "SELECT d.user_id, d.channel, d.country, d.locale, d.status, d.sent_at, d.message_id, "
    "d.content_sha256, s.subject, u.email FROM delivery d "
    "LEFT JOIN subject_key s ON s.user_id = d.user_id "
    'LEFT JOIN "user" u ON u.id = d.user_id '
    "WHERE d.campaign_id = :c AND d.message = 'notice' AND (d.user_id > :u OR "
    "(d.user_id = :u AND d.channel > :ch)) ORDER BY d.user_id, d.channel LIMIT 5000"
)
_README = """Herald evidence pack (format v{v}) for campaign {campaign}, exported {at}.

events.jsonl       every event of the campaign's log, one canonical JSON line each (the
                   Merkle leaves, in order)
checkpoints.jsonl  the signed tree heads, as written; keys.jsonl: key rotations, if any
public-key.pem     the key that signed the manifest (pin the one you were given instead:
                   python3 verify.py . --public-key THAT.pem)
recipients.jsonl   one line per targeted subject: country, locale, each channel's final
                   status and time, Message-ID, content hash, keyed hash of the address
spec/              the exact campaign file, templates and catalogs it started with
report.json        the coverage report; report.html, the same as a page
manifest.json      the SHA-256 of every file, signed with the campaign's key
verify.py          a stand-alone verifier: python3 verify.py DIR [--public-key K]
                   (needs only Python 3.11+ and the `cryptography` package)

The format is specified byte by byte in Herald's docs/evidence.md. This pack holds no email
address, name, IP address, objection reason or objection link.
"""


class ExportError(EngineError):
    """The campaign cannot be exported (unknown, not started, nothing signed)."""


def export_pack(
    engine: Engine,
    settings: Settings,
    campaign: str,
    out: Path,
    address_hash: Callable[[str], str],
    on_warning: Callable[[Problem], None] = lambda _: None,
) -> dict[str, Any]:
    """Write the pack to `out` (a folder, or a .zip file); return its manifest.
    `address_hash` is the keyed hash of an address (delivery.tokens.Keys.email_hash);
    `on_warning` hears how a campaign an earlier version launched was read (asstored.py)."""
    digest = campaign_store.stored_spec(engine, campaign)
    if digest is None:
        raise ExportError(f"campaign {campaign!r} has not started in this database")
    local = checkpoint_file(settings.checkpoints, campaign)
    if not local.exists():
        raise ExportError(f"{local}: no signed checkpoint to export; run a writer first")
    signer = signer_for(settings)
    if not out.parent.is_dir():
        raise ExportError(f"{out.parent}: no such folder to export into")
    if out.suffix == ".zip":
        with tempfile.TemporaryDirectory(dir=out.parent) as scratch:
            manifest = _write(
                engine, settings, campaign, digest, signer, Path(scratch), address_hash, on_warning
            )
            _zip(Path(scratch), out)
        return manifest
    if out.exists() and any(out.iterdir()):
        raise ExportError(f"{out} exists and is not empty")
    out.mkdir(mode=0o700, parents=True, exist_ok=True)
    return _write(engine, settings, campaign, digest, signer, out, address_hash, on_warning)


def _write(
    engine: Engine,
    settings: Settings,
    campaign: str,
    digest: str,
    signer: Signer,
    out: Path,
    address_hash: Callable[[str], str],
    on_warning: Callable[[Problem], None],
) -> dict[str, Any]:
    at = iso(dt.datetime.now(dt.UTC).timestamp())
    with (out / "events.jsonl").open("wb") as fp:
        for event in iter_events(engine, campaign):
            fp.write(event["body"].encode("utf-8") + b"\n")
    signed = whole_lines(checkpoint_file(settings.checkpoints, campaign))
    (out / "checkpoints.jsonl").write_bytes(signed)
    if (settings.checkpoints / KEYS_FILE).exists():
        (out / KEYS_FILE).write_bytes(whole_lines(settings.checkpoints / KEYS_FILE))
    (out / "public-key.pem").write_text(signer.public_key_pem)
    with (out / "recipients.jsonl").open("wb") as fp:
        for line in _recipients(engine, campaign, address_hash):
            fp.write(canonical(line) + b"\n")
    files = campaign_store.stored_files(engine, campaign)
    for file in files:
        target = out / "spec" / file.path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(file.content)
    loaded = restore(campaign, files, spec_folder(settings.var, campaign, digest), reading=True)
    for warning in loaded.warnings:
        on_warning(warning)
    report = campaign_report(engine, loaded.campaign)
    report["evidence"] = evidence_status(settings.var / "verified", engine, campaign)
    (out / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    (out / "report.html").write_text(
        render_report_html(report, report["evidence"], dt.datetime.now(dt.UTC)), "utf-8"
    )
    verifier = importlib.resources.files("engine").joinpath("data/verify_pack.py")
    (out / "verify.py").write_text(verifier.read_text("utf-8"), "utf-8")
    (out / "README.txt").write_text(_README.format(v=FORMAT, campaign=campaign, at=at))
    fields = {
        "v": FORMAT,
        "type": "manifest",
        "campaign": campaign,
        "created_at": at,
        "files": {
            path.relative_to(out).as_posix(): _sha256(path)
            for path in sorted(out.rglob("*"))
            if path.is_file()
        },
        "key": b64(signer.public_key),
    }
    manifest = {**fields, "sig": b64(signer.sign(MANIFEST_CONTEXT + canonical(fields)))}
    (out / "manifest.json").write_bytes(canonical(manifest) + b"\n")
    return manifest


def _recipients(
    engine: Engine, campaign: str, address_hash: Callable[[str], str]
) -> Iterator[dict[str, Any]]:
    """One line per subject, grouping its notice deliveries (rows come in user order)."""
    current: dict[str, Any] | None = None
    current_user, last_user, last_channel = None, "", ""
    while True:
        with engine.connect() as conn:
            result = conn.execute(_RECIPIENTS, {"c": campaign, "u": last_user, "ch": last_channel})
            rows = [dict(r) for r in result.mappings()]
        if not rows:
            break
        for r in rows:
            if r["user_id"] != current_user:
                if current is not None:
                    yield current
                current_user = r["user_id"]
                subject = r["subject"] or _erased_subject(r["user_id"])
                current = {
                    "subject": subject,
                    "country": r["country"],
                    "locale": r["locale"],
                    "address_hash": address_hash(r["email"]) if r["email"] else None,
                    "channels": {},
                }
            assert current is not None
            current["country"] = max(current["country"], r["country"])
            current["locale"] = max(current["locale"], r["locale"])
            notified = r["status"] in ("sent", "delivered")
            final = r["status"] in ("sent", "delivered", "failed", "bounced")
            current["channels"][r["channel"]] = {
                "status": r["status"] if final else "open",
                "at": iso(r["sent_at"]) if notified and r["sent_at"] else None,
                "message_id": r["message_id"] if notified else None,
                "content_sha256": r["content_sha256"] if notified else None,
            }
        last_user, last_channel = rows[-1]["user_id"], rows[-1]["channel"]
    if current is not None:
        yield current


def _erased_subject(user_id: str) -> str | None:
    return user_id.removeprefix("erased:") if user_id.startswith("erased:") else None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fp:
        for block in iter(lambda: fp.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _zip(folder: Path, out: Path) -> None:
    tmp = out.with_name(f".{out.name}.tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(folder).as_posix())
    tmp.replace(out)
