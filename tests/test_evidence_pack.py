"""The evidence pack, receipts and erasure, on copies of one real run (tests/evidence_run.py).

A pack is checked where no database exists, by `herald evidence verify PACK` and by the
pack's own verify.py in a separate Python process; both must agree, on the honest pack
and on every tampered one.
"""

import json
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from engine.canonical import canonical
from engine.evidence.checkpoints import Signer, b64
from engine.evidence.pack import MANIFEST_CONTEXT
from tests.conftest import Herald, ScratchProject

CAMPAIGN = "ai-training-notice"


def export(run: Herald, out: Path) -> Path:
    result = run("evidence", "export", CAMPAIGN, "--out", str(out))
    assert result.exit_code == 0, result.output
    return out


def offline(run: Herald, pack: Path, tmp_path: Path) -> tuple[int, str, int, str]:
    """(herald's exit, its output, verify.py's exit, its output), with no database around."""
    nowhere = tmp_path / "nowhere"
    nowhere.mkdir(exist_ok=True)
    pinned = str(run.project.root / "pinned.pem")
    lonely = Herald(ScratchProject(nowhere), {"HERALD_DB": "sqlite:////nonexistent/none.db"})
    ours = lonely("evidence", "verify", str(pack), "--public-key", pinned)
    script = pack / "verify.py" if pack.is_dir() else None
    if script is None:
        with zipfile.ZipFile(pack) as archive:
            archive.extract("verify.py", tmp_path / "unzipped")
        script = tmp_path / "unzipped" / "verify.py"
    folder = pack if pack.is_dir() else _unzip(pack, tmp_path / "unzipped-pack")
    theirs = subprocess.run(
        [sys.executable, str(script), str(folder), "--public-key", pinned],
        capture_output=True,
        text=True,
        cwd=nowhere,
        timeout=120,
        check=False,
    )
    return ours.exit_code, ours.output, theirs.returncode, theirs.stdout + theirs.stderr


def _unzip(pack: Path, folder: Path) -> Path:
    with zipfile.ZipFile(pack) as archive:
        archive.extractall(folder)
    return folder


def test_a_pack_verifies_offline_by_herald_and_by_its_own_verifier(run, tmp_path):
    pack = export(run, tmp_path / "pack")
    ours, text, theirs, their_text = offline(run, pack, tmp_path)
    assert ours == 0, text
    assert theirs == 0, their_text
    assert "recipients agree with the events" in text
    assert "/notified" in text  # the figures, side by side
    names = {p.relative_to(pack).as_posix() for p in pack.rglob("*") if p.is_file()}
    for name in ("events.jsonl", "checkpoints.jsonl", "recipients.jsonl", "report.json",
                 "report.html", "manifest.json", "verify.py", "README.txt", "public-key.pem",
                 f"spec/campaigns/{CAMPAIGN}.yaml"):  # fmt: skip
        assert name in names, name


def test_export_signs_what_a_killed_writer_left_unsigned(run, tmp_path):
    """A writer killed before its checkpoint leaves events no checkpoint covers (here a
    pause written by the store alone, as such a writer would have). Export signs them
    first, so the pack covers every event it holds, and its verify.py says nothing is
    unsigned; before, it said OK while thousands were."""
    import time

    from engine.store import campaigns as campaign_store

    campaign_store.set_paused(run.database(), CAMPAIGN, True, time.time(), "test")
    verify = run("evidence", "verify", "--db")
    assert "; 1 unsigned since " in verify.output
    pack = export(run, tmp_path / "pack")
    ours, text, theirs, their_text = offline(run, pack, tmp_path)
    assert theirs == 0, their_text
    assert "after the last signed checkpoint" not in their_text
    events = len((pack / "events.jsonl").read_bytes().splitlines())
    last = json.loads((pack / "checkpoints.jsonl").read_bytes().splitlines()[-1])
    assert last["size"] == events


def test_a_zipped_pack_verifies_too(run, tmp_path):
    pack = export(run, tmp_path / "pack.zip")
    ours, text, theirs, their_text = offline(run, pack, tmp_path)
    assert (ours, theirs) == (0, 0), text + their_text


def test_a_pack_holds_no_address_name_reason_or_token(run, tmp_path):
    pack = export(run, tmp_path / "pack")
    with run.database().connect() as conn:
        from sqlalchemy import text

        users = conn.execute(text('SELECT email, name FROM "user"')).all()
        tokens = [r[0] for r in conn.execute(text("SELECT objection_url FROM inapp_notification"))]
    blob = b"".join(
        p.read_bytes() for p in pack.rglob("*") if p.is_file() and "spec/" not in p.as_posix()
    ).decode("utf-8", "replace")
    for email, name in users:
        assert email not in blob
        if name:
            assert name not in blob, name
    assert "non" + "\u00a0" not in blob
    for url in tokens:
        assert url.rsplit("/", 1)[-1] not in blob


@pytest.mark.parametrize(
    "damage",
    [
        "events-byte",
        "events-line",
        "recipients-line",
        "spec-byte",
        "checkpoint-byte",
        "report-byte",
    ],  # fmt: skip
)
def test_any_damage_to_a_pack_fails_both_verifiers_naming_the_file(run, tmp_path, damage):
    pack = export(run, tmp_path / "pack")
    target = {
        "events": pack / "events.jsonl",
        "recipients": pack / "recipients.jsonl",
        "spec": pack / "spec" / "campaigns" / f"{CAMPAIGN}.yaml",
        "checkpoint": pack / "checkpoints.jsonl",
        "report": pack / "report.json",
    }[damage.split("-")[0]]
    data = target.read_bytes()
    if damage.endswith("line"):
        lines = data.splitlines(keepends=True)
        data = b"".join(lines[:3] + lines[4:])
    else:
        middle = len(data) // 2
        data = data[:middle] + bytes([data[middle] ^ 0x01]) + data[middle + 1 :]
    target.write_bytes(data)
    ours, text, theirs, their_text = offline(run, pack, tmp_path)
    assert ours == 1, text
    assert theirs == 1, their_text
    name = target.relative_to(pack).as_posix()
    assert name in text
    assert name in their_text


def _resign(run: Herald, pack: Path) -> None:
    """What an insider with the signing key does after editing a file: a fresh manifest."""
    import hashlib

    manifest = json.loads((pack / "manifest.json").read_bytes())
    present = {p.relative_to(pack).as_posix() for p in pack.rglob("*") if p.is_file()}
    manifest["files"] = {
        name: hashlib.sha256((pack / name).read_bytes()).hexdigest()
        for name in sorted(present - {"manifest.json"})
    }
    fields = {k: v for k, v in manifest.items() if k != "sig"}
    signer = Signer.load(run.project.root / "var" / "signing.pem")
    manifest["sig"] = b64(signer.sign(MANIFEST_CONTEXT + canonical(fields)))
    (pack / "manifest.json").write_bytes(canonical(manifest) + b"\n")


@pytest.mark.parametrize(
    "edit",
    [
        "figure",
        "duplicates",
        "recipient-line",
        "event-line",
        "spec-file",
        "spec-added",
        "spec-removed",
    ],
)
def test_a_resigned_pack_is_still_held_to_its_events(run, tmp_path, edit):
    """The insider has the key and re-signs the manifest: the figures, recipients and
    checkpoints still have to agree with the events, and spec/ with the files `started`
    bound (a notice text other than the one sent, a catalog added or left out)."""
    pack = export(run, tmp_path / "pack")
    template = pack / "spec" / "templates" / "ai-training-notice" / "email.txt"
    catalog = pack / "spec" / "locales" / "de" / "LC_MESSAGES" / "messages.po"
    if edit in ("figure", "duplicates"):
        figure = "notified" if edit == "figure" else "possible_duplicates"
        report = json.loads((pack / "report.json").read_text())
        report[figure] += 1
        (pack / "report.json").write_text(json.dumps(report, indent=2))
        needle = f"report.json/{figure}"
    elif edit == "recipient-line":
        lines = (pack / "recipients.jsonl").read_bytes().splitlines(keepends=True)
        (pack / "recipients.jsonl").write_bytes(b"".join(lines[1:]))
        needle = "recipients.jsonl"
    elif edit == "event-line":
        lines = (pack / "events.jsonl").read_bytes().splitlines(keepends=True)
        (pack / "events.jsonl").write_bytes(b"".join(lines[:-1]))
        needle = "events.jsonl"
    elif edit == "spec-file":
        template.write_text(template.read_text().replace("free of charge", "for a fee"))
        needle = "spec/templates/ai-training-notice/email.txt"
    elif edit == "spec-added":
        (template.parent / "extra.txt").write_text("not launched\n")
        needle = "spec/templates/ai-training-notice/extra.txt"
    else:
        catalog.unlink()
        needle = "spec/locales/de/LC_MESSAGES/messages.po"
    _resign(run, pack)
    ours, text, theirs, their_text = offline(run, pack, tmp_path)
    assert ours == 1, text
    assert theirs == 1, their_text
    assert needle in text
    assert needle in their_text


def test_a_receipt_verifies_alone_and_reveals_no_other_user(run, tmp_path):
    receipt = tmp_path / "receipt.json"
    made = run("evidence", "receipt", CAMPAIGN, "fr-1", "--out", str(receipt))
    assert made.exit_code == 0, made.output
    data = json.loads(receipt.read_text())
    kinds = [json.loads(e["body"])["kind"] for e in data["events"]]
    assert kinds[0] == "started"
    assert "objected" in kinds
    assert any(k in ("sent", "delivered") for k in kinds)
    assert data["messages"]
    lonely = Herald(ScratchProject(tmp_path), {"HERALD_DB": "sqlite:////nonexistent/none.db"})
    pinned = str(run.project.root / "pinned.pem")
    checked = lonely("evidence", "verify", str(receipt), "--public-key", pinned)
    assert checked.exit_code == 0, checked.output
    with run.database().connect() as conn:
        from sqlalchemy import text

        others = conn.execute(
            text("SELECT user_id, subject FROM subject_key WHERE user_id != 'fr-1'")
        ).all()
    raw = receipt.read_text()
    for user_id, subject in others:
        assert f'"{user_id}"' not in raw
        assert subject not in raw
    body = data["events"][1]["body"]
    data["events"][1]["body"] = body.replace('"planned"', '"failed"')
    receipt.write_text(json.dumps(data))
    tampered = lonely("evidence", "verify", str(receipt), "--public-key", pinned)
    assert tampered.exit_code == 1
    assert "inclusion proof" in tampered.stderr


def test_a_receipt_is_the_same_from_a_database_an_earlier_version_indexed(run, tmp_path):
    """Herald once kept an index on events' subjects; a database that has it loses it on
    open, and a receipt (which finds the user's events in its pass over the log) is the
    same byte for byte."""
    from sqlalchemy import inspect, text

    first, second = tmp_path / "first.json", tmp_path / "second.json"
    assert run("evidence", "receipt", CAMPAIGN, "fr-1", "--out", str(first)).exit_code == 0
    engine = run.database()
    with engine.begin() as conn:
        conn.execute(text("CREATE INDEX ix_event_subject ON event (subject)"))
    engine.dispose()
    assert run("evidence", "receipt", CAMPAIGN, "fr-1", "--out", str(second)).exit_code == 0
    assert second.read_bytes() == first.read_bytes()
    engine = run.database()
    assert "ix_event_subject" not in {ix["name"] for ix in inspect(engine).get_indexes("event")}
    engine.dispose()


def test_a_receipt_waits_until_the_users_last_event_is_signed(run):
    from engine.store import writing
    from engine.store.events import append_events, iso

    engine = run.database()
    with writing(engine) as conn:
        event = {"kind": "seen", "at": iso(1.0e9), "user_id": "fr-1", "channel": "inapp"}
        append_events(conn, CAMPAIGN, [event])
    engine.dispose()
    refused = run("evidence", "receipt", CAMPAIGN, "fr-1")
    assert refused.exit_code == 1
    assert "not all under a signed checkpoint yet" in refused.stderr
    assert run("evidence", "receipt", CAMPAIGN, "de-1").exit_code == 0  # others' are signed


def test_erasure_keeps_the_proof_and_removes_the_person(run, tmp_path):
    before = json.loads(run("report", str(run.project.campaign), "--format", "json").stdout)
    erased = run("users", "erase", "de-1", "fr-1")
    assert erased.exit_code == 0, erased.output
    after = json.loads(run("report", str(run.project.campaign), "--format", "json").stdout)
    for figure in ("targeted", "notified", "failed", "pending", "objected"):
        assert after[figure] == before[figure], figure
    verified = run(
        "evidence", "verify", "--db", "--public-key", str(run.project.root / "pinned.pem")
    )
    assert verified.exit_code == 0, verified.output
    pack = export(run, tmp_path / "pack")
    ours, text, theirs, their_text = offline(run, pack, tmp_path)
    assert (ours, theirs) == (0, 0), text + their_text
    places = [*(run.project.root / "var").rglob("*"), *pack.rglob("*")]
    for needle in ("anna@example.com", "Anna Müller", "luc@example.com", "Luc Dupont"):
        for path in places:
            if path.is_file():
                assert needle.encode() not in path.read_bytes(), (needle, path)
    refused = run("evidence", "receipt", CAMPAIGN, "de-1")
    assert refused.exit_code == 1
    assert "erased" in refused.stderr
    from sqlalchemy import text as sql

    from engine.delivery.tokens import Keys

    old_token = Keys(run.env["HERALD_SECRET"].encode()).token_id(CAMPAIGN, "de-1")
    with run.database().connect() as conn:  # the secret and the id no longer find the rows
        query = sql("SELECT COUNT(*) FROM delivery WHERE token_id = :t")
        assert conn.execute(query, {"t": old_token}).scalar() == 0


def test_erasing_an_unknown_id_or_a_bad_file_erases_nothing(run, tmp_path):
    unknown = run("users", "erase", "de-1", "nobody-here")
    assert unknown.exit_code == 1
    assert "no such user: nobody-here" in unknown.stderr
    bad = tmp_path / "ids.txt"
    bad.write_text("de-1\nfr-1,pl-1\n")
    malformed = run("users", "erase", "--from", str(bad))
    assert malformed.exit_code == 1
    assert f"{bad}:2: not a user id" in malformed.stderr
    with run.database().connect() as conn:
        from sqlalchemy import text

        assert conn.execute(text("SELECT COUNT(*) FROM \"user\" WHERE id = 'de-1'")).scalar() == 1


def test_objection_reasons_are_purged_after_their_retention_and_the_log_says_so(run):
    import time

    from sqlalchemy import text

    from engine.store.objections import purge_reasons

    engine = run.database()
    assert purge_reasons(engine, time.time()) == {}  # nothing is 90 days old yet
    later = time.time() + 91 * 86400
    assert purge_reasons(engine, later) == {CAMPAIGN: 1}
    with engine.connect() as conn:
        assert conn.execute(text("SELECT reason FROM objection")).scalar() is None
        purged = conn.execute(text("SELECT body FROM event WHERE kind = 'purged'")).scalar()
    assert json.loads(purged)["data"]["reasons"] == 1
    assert purge_reasons(engine, later) == {}  # once
    pinned = str(run.project.root / "pinned.pem")
    verified = run("evidence", "verify", "--db", "--public-key", pinned)
    assert verified.exit_code == 0, verified.output


def _damaged(receipt: dict[str, Any], damage: str) -> None:
    if damage == "proof":
        receipt["events"][1]["proof"][0] = "zz"
    elif damage == "seq":
        receipt["events"][1]["seq"] = "x"
    elif damage == "range":
        del receipt["checkpoint"]["range"]
    elif damage == "secret":
        receipt["secret"] = "nothex"
    else:
        receipt["events"] = [{"seq": 1}]


@pytest.mark.parametrize(
    ("damage", "named"),
    [
        ("proof", "proof[0]"),
        ("seq", "'seq'"),
        ("range", "'range' is missing"),
        ("secret", "'secret'"),
        ("body", "'body'"),
    ],
)
def test_a_malformed_receipt_is_refused_naming_the_field(run, tmp_path, damage, named):
    receipt = tmp_path / "receipt.json"
    assert run("evidence", "receipt", CAMPAIGN, "fr-1", "--out", str(receipt)).exit_code == 0
    data = json.loads(receipt.read_text())
    _damaged(data, damage)
    receipt.write_text(json.dumps(data))
    checked = run("evidence", "verify", str(receipt))
    assert checked.exit_code == 1
    assert "not a well-formed receipt" in checked.stderr
    assert named in checked.stderr
    assert "Traceback" not in checked.output


def test_export_and_verify_say_what_is_wrong_with_a_path(run, tmp_path):
    missing = run("evidence", "export", CAMPAIGN, "--out", str(tmp_path / "no" / "pack.zip"))
    assert missing.exit_code == 1
    assert "no such folder to export into" in missing.stderr
    unknown = run("evidence", "export", "no-such-campaign", "--out", str(tmp_path / "p"))
    assert unknown.exit_code == 1
    assert "has not started in this database" in unknown.stderr
    other = tmp_path / "notes.json"
    other.write_text("[1, 2]")
    neither = run("evidence", "verify", str(other))
    assert neither.exit_code == 1
    assert "neither a pack" in neither.stderr
    folder = tmp_path / "empty"
    folder.mkdir()
    empty = run("evidence", "verify", str(folder))
    assert empty.exit_code == 1
    assert "manifest.json: missing" in empty.stderr


@pytest.mark.parametrize(
    "command",
    [
        ("evidence", "receipt", CAMPAIGN, "fr-1"),
        ("report", CAMPAIGN, "--format", "json"),
        ("report", CAMPAIGN, "--format", "html"),
        ("report", CAMPAIGN, "--format", "table"),
    ],
)
def test_out_into_a_folder_that_does_not_exist_is_named_not_a_traceback(run, tmp_path, command):
    nowhere = tmp_path / "no-such-folder" / "out.txt"
    refused = run(*command, "--out", str(nowhere))
    assert refused.exit_code == 1, refused.output
    assert f"cannot write {nowhere}: No such file or directory" in refused.output
    assert "Traceback" not in refused.output


def test_a_receipt_for_a_campaign_that_is_not_there_says_so(run):
    refused = run("evidence", "receipt", "no-such-campaign", "fr-1")
    assert refused.exit_code == 1
    assert "no campaign 'no-such-campaign' in this database" in refused.stderr
