"""Bounces end to end: send through a real SMTP server with VERP envelope senders, then
reports back through the real receiver (SMTP on loopback) or a mailbox file."""

import json
import mailbox
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from engine.delivery.returnpath import read_return_path, return_path
from engine.delivery.tokens import Keys
from tests.bounces import BounceServer, arf, dsn
from tests.conftest import ROOT
from tests.smtp import Mailbox, serve

USERS = str(ROOT / "tests" / "users.csv")
DOMAIN = "bounces.example.com"


def _send(herald) -> Mailbox:
    """Email only, in-app as the fallback; every message accepted by the first server."""
    herald.set_campaign("channels: [email, inapp]", "channels: [email]")
    herald.set_campaign("fallback: null", "fallback: inapp")
    assert herald("users", "import", USERS).exit_code == 0
    assert herald("plan", "ai-training-notice").exit_code == 0
    mailbox = Mailbox()
    for server in serve(mailbox):
        sent = herald("send", "ai-training-notice", "--max-wait", "5", smtp=server.url)
        assert sent.exit_code == 0, sent.output
    return mailbox


def _rows(herald) -> dict[tuple[str, str], dict[str, Any]]:
    with herald.database().connect() as conn:
        rows = conn.execute(text("SELECT * FROM delivery")).mappings()
        return {(r["user_id"], r["channel"]): dict(r) for r in rows}


def _events(herald, kind: str | None = None) -> list[dict[str, Any]]:
    with herald.database().connect() as conn:
        rows = conn.execute(text("SELECT kind, delivery_id, body FROM event ORDER BY seq"))
        found = [{"kind": k, "delivery_id": d, "data": json.loads(v)["data"]} for k, d, v in rows]
    return [e for e in found if kind is None or e["kind"] == kind]


def _keys(herald) -> Keys:
    return Keys(herald.env["HERALD_SECRET"].encode())


def _receiver(herald, **options: object) -> BounceServer:
    return BounceServer(herald.database(), herald.env["HERALD_SECRET"], DOMAIN, **options)


def test_envelope_sender_is_a_signed_return_path_and_from_stays(herald):
    mailbox = _send(herald)
    rows = _rows(herald)
    by_message_id = {r["message_id"]: r["id"] for r in rows.values()}
    assert len(mailbox.senders) == 5
    for message, sender in zip(mailbox.messages, mailbox.senders, strict=True):
        assert message["From"].addresses[0].addr_spec == "privacy@example.com"
        assert sender.startswith("bounces+")
        assert sender.endswith("@" + DOMAIN)
        assert read_return_path(sender, _keys(herald)) == by_message_id[message["Message-ID"]]
        assert "example.com>" not in sender.partition("@")[0]  # no address inside


def test_a_dsn_bounces_the_delivery_plans_the_fallback_and_verify_passes(herald):
    _send(herald)
    anna = _rows(herald)[("de-1", "email")]
    verp = return_path("bounces@" + DOMAIN, anna["id"], _keys(herald))
    report = dsn(verp, anna["message_id"])
    with _receiver(herald) as bounces:
        assert bounces.send(verp, report) == (250, b"2.0.0 bounced")
        before = len(_events(herald))
        assert bounces.send(verp, report) == (250, b"2.0.0 unchanged")  # the same DSN again
        assert len(_events(herald)) == before
    rows = _rows(herald)
    assert rows[("de-1", "email")]["status"] == "bounced"
    assert rows[("de-1", "email")]["last_error"] == "5.1.1 bad-address"
    assert rows[("de-1", "inapp")]["is_fallback"]
    assert ("fr-1", "inapp") not in rows  # only the bounced user falls back
    [event] = _events(herald, "bounced")
    assert event["delivery_id"] == anna["id"]
    assert event["data"]["status"] == "5.1.1"
    assert event["data"]["matched_by"] == "return-path"
    assert "anna@example.com" not in json.dumps(event)
    assert "addr:" in event["data"]["diagnostic"]

    again = herald("send", "ai-training-notice", "--max-wait", "5")
    assert again.exit_code == 0, again.output
    assert _rows(herald)[("de-1", "inapp")]["status"] == "delivered"
    report_json = json.loads(herald("report", "ai-training-notice", "--format", "json").stdout)
    assert report_json["notified"] == 5  # anna through in-app, not through the bounced email
    assert report_json["channels"]["email"]["bounced"] == 1
    assert report_json["bounces"] == {
        "bounced": 1,
        "rate": 0.2,
        "complaints": 0,
        "by_channel": {"email": 1},
        "by_country": {"AT": 1},
        "by_reason": {"bad-address": 1},
    }
    verified = herald("evidence", "verify", "--db")
    assert verified.exit_code == 0, verified.output
    status = herald("status")
    assert "bounce rate" in status.stdout
    assert "20.0%" in status.stdout
    exported = herald("bounces", "export")
    assert exported.exit_code == 0, exported.output
    lines = exported.stdout.splitlines()
    assert lines[0] == "campaign,user_id,address_hash,status,reason,bounced_at"
    assert lines[1].startswith("ai-training-notice,de-1,")
    assert _keys(herald).email_hash("anna@example.com") in lines[1]
    assert "@" not in exported.stdout
    out = herald.project.path("bounces.jsonl")
    written = herald("bounces", "export", "--format", "jsonl", "--out", str(out))
    assert "1 bounced address(es) written" in written.output
    assert json.loads(out.read_text(encoding="utf-8"))["user_id"] == "de-1"


def test_a_bounced_user_with_no_fallback_is_not_notified(herald):
    herald.set_campaign("channels: [email, inapp]", "channels: [email]")
    assert herald("users", "import", USERS).exit_code == 0
    assert herald("plan", "ai-training-notice").exit_code == 0
    for server in serve(Mailbox()):
        assert herald("send", "ai-training-notice", smtp=server.url).exit_code == 0
    anna = _rows(herald)[("de-1", "email")]
    verp = return_path("bounces@" + DOMAIN, anna["id"], _keys(herald))
    with _receiver(herald) as bounces:
        assert bounces.send(verp, dsn(verp, anna["message_id"]))[0] == 250
    report = json.loads(herald("report", "ai-training-notice", "--format", "json").stdout)
    assert (report["notified"], report["failed"], report["pending"]) == (4, 1, 0)
    assert report["coverage_equation_holds"]
    assert report["by_country"]["AT"]["notified"] == 0


def test_bad_reports_change_nothing_and_the_receiver_keeps_serving(herald):
    _send(herald)
    anna = _rows(herald)[("de-1", "email")]
    keys = _keys(herald)
    verp = return_path("bounces@" + DOMAIN, anna["id"], keys)
    forged = verp.replace(verp.split("-")[-1][:4], "0000" if "0000" not in verp else "1111")
    unknown = return_path("bounces@" + DOMAIN, 99_999, keys)
    before = len(_events(herald))
    with _receiver(herald, max_bytes=10 * 1024 * 1024) as bounces:
        assert bounces.send(forged, dsn(forged, anna["message_id"])) == (250, b"2.0.0 forged")
        assert bounces.send(unknown, dsn(unknown, "<nope@x>")) == (250, b"2.0.0 unmatched")
        assert bounces.send("postmaster@elsewhere.test", b"Subject: x\r\n\r\nx\r\n")[0] == 550
        broken = b"Content-Type: multipart/report; report-type=delivery-status\r\n\r\nno parts\r\n"
        assert bounces.send(verp, broken) == (250, b"2.0.0 unparseable")
        auto = b"Subject: Out of office\r\nAuto-Submitted: auto-replied\r\n\r\nBack soon.\r\n"
        assert bounces.send(verp, auto) == (250, b"2.0.0 autoreply")
        huge = b"Subject: big\r\n\r\n" + (b"x" * 998 + b"\r\n") * 21_000  # ~21 MB
        assert bounces.send(verp, huge)[0] == 552
        import smtplib

        with smtplib.SMTP("127.0.0.1", bounces.port, timeout=10) as client:
            assert client.ehlo()[0] == 250
            assert client.mail("", ["SIZE=20971520"])[0] == 552  # refused at the door
        assert bounces.send(verp, dsn(verp, anna["message_id"])) == (250, b"2.0.0 bounced")
        assert bounces.send(verp, dsn(verp, anna["message_id"])) == (250, b"2.0.0 unchanged")
        tally = dict(bounces.processor.tally)
    assert tally == {
        "forged": 1,
        "unmatched": 1,
        "unparseable": 1,
        "autoreply": 1,
        "bounced": 1,
        "unchanged": 1,
    }
    kinds = [e["kind"] for e in _events(herald)[before:]]
    assert kinds == ["bounced", "planned"]  # only the genuine one, once


def test_delays_and_complaints_are_events_recorded_once(herald):
    _send(herald)
    rows = _rows(herald)
    luc, zofia = rows[("fr-1", "email")], rows[("pl-1", "email")]
    keys = _keys(herald)
    luc_verp = return_path("bounces@" + DOMAIN, luc["id"], keys)
    delayed = dsn(luc_verp, luc["message_id"], status="4.4.1", action="delayed")
    complaint = arf("fbl@" + DOMAIN, zofia["message_id"])
    with _receiver(herald) as bounces:
        for _ in range(2):
            assert bounces.send(luc_verp, delayed)[0] == 250
            assert bounces.send("fbl@" + DOMAIN, complaint)[0] == 250
        tally = dict(bounces.processor.tally)
    assert tally == {"delayed": 1, "complained": 1, "unchanged": 2}
    [delay] = _events(herald, "delayed")
    assert (delay["delivery_id"], delay["data"]["status"]) == (luc["id"], "4.4.1")
    [complained] = _events(herald, "complained")
    assert complained["delivery_id"] == zofia["id"]
    assert complained["data"]["matched_by"] == "message-id"
    rows = _rows(herald)
    assert rows[("fr-1", "email")]["status"] == rows[("pl-1", "email")]["status"] == "sent"
    report = json.loads(herald("report", "ai-training-notice", "--format", "json").stdout)
    assert report["bounces"]["complaints"] == 1
    assert report["bounces"]["bounced"] == 0


def test_ingest_reads_mbox_and_maildir_and_is_safe_twice(herald, tmp_path: Path):
    _send(herald)
    rows = _rows(herald)
    keys = _keys(herald)
    box = mailbox.mbox(tmp_path / "bounces.mbox")
    folder = mailbox.Maildir(tmp_path / "Maildir")
    for user, target in (("de-1", box), ("pl-1", folder)):
        row = rows[(user, "email")]
        verp = return_path("bounces@" + DOMAIN, row["id"], keys)
        target.add(b"Delivered-To: " + verp.encode() + b"\r\n" + dsn(verp, row["message_id"]))
        target.add(b"Subject: hello\r\n\r\nnot a bounce\r\n")
    box.close()
    folder.close()
    first = herald("bounces", "ingest", str(tmp_path / "bounces.mbox"))
    assert first.exit_code == 0, first.output
    assert "2 message(s)" in first.stdout
    assert "1 bounced, 1 unrecognised" in first.stdout
    again = herald("bounces", "ingest", str(tmp_path / "bounces.mbox"))
    assert "1 unchanged, 1 unrecognised" in again.stdout
    maildir = herald("bounces", "ingest", str(tmp_path / "Maildir"))
    assert "1 bounced" in maildir.stdout, maildir.output
    statuses = {k[0]: r["status"] for k, r in _rows(herald).items() if k[1] == "email"}
    assert statuses["de-1"] == statuses["pl-1"] == "bounced"
    assert len(_events(herald, "bounced")) == 2
    missing = herald("bounces", "ingest", str(tmp_path / "nothing"))
    assert missing.exit_code == 1
    assert "no such file or folder" in missing.stderr


def test_without_a_return_path_bounces_match_by_message_id_and_validate_says_so(herald):
    herald.set_campaign("  return_path: bounces@bounces.example.com", "  return_path: null")
    validated = herald("validate", "campaigns/ai-training-notice.yaml")
    assert "sender.return_path" in validated.output
    assert "Message-ID" in validated.output
    _send(herald)
    anna = _rows(herald)[("de-1", "email")]
    assert anna["message_id"]
    plain = "bounces@" + DOMAIN
    with _receiver(herald) as bounces:
        assert bounces.send(plain, dsn(plain, anna["message_id"])) == (250, b"2.0.0 bounced")
    [event] = _events(herald, "bounced")
    assert event["data"]["matched_by"] == "message-id"


def test_a_database_an_earlier_version_indexed_still_matches_by_message_id(herald):
    """Herald once indexed every delivery's Message-ID; now only emails' (tables.py). A
    database with the old index gets the new one on open, and bounces still match."""
    from sqlalchemy import inspect

    herald.set_campaign("  return_path: bounces@bounces.example.com", "  return_path: null")
    assert herald("users", "import", USERS).exit_code == 0
    engine = herald.database()
    with engine.begin() as conn:
        conn.execute(text("DROP INDEX ix_delivery_email_message_id"))
        conn.execute(text("CREATE INDEX ix_delivery_message_id ON delivery (message_id)"))
    engine.dispose()
    _send(herald)
    engine = herald.database()
    indexes = {ix["name"] for ix in inspect(engine).get_indexes("delivery")}
    engine.dispose()
    assert "ix_delivery_message_id" not in indexes
    assert "ix_delivery_email_message_id" in indexes
    anna = _rows(herald)[("de-1", "email")]
    plain = "bounces@" + DOMAIN
    with _receiver(herald) as bounces:
        assert bounces.send(plain, dsn(plain, anna["message_id"])) == (250, b"2.0.0 bounced")
    [event] = _events(herald, "bounced")
    assert (event["delivery_id"], event["data"]["matched_by"]) == (anna["id"], "message-id")


@pytest.mark.parametrize(
    ("address", "genuine"),
    [
        pytest.param("upper", True, id="case-folded-by-an-mta"),
        pytest.param("tag", False, id="tag-changed"),
        pytest.param("id", False, id="id-changed"),
        pytest.param("plain", False, id="no-tag"),
    ],
)
def test_return_path_reads_back_only_when_genuine(address, genuine):
    keys = Keys(b"k" * 32)
    verp = return_path("Bounces@Bounces.Example.com", 123_456, keys)
    assert verp == verp.lower()
    changed = {
        "upper": verp.upper(),
        "tag": verp[:-30] + ("0" if verp[-30] != "0" else "1") + verp[-29:],
        "id": verp.replace("+2n9c-", "+2n9d-"),
        "plain": "bounces@bounces.example.com",
    }[address]
    assert changed != verp or address == "upper"
    assert read_return_path(changed, keys) == (123_456 if genuine else None)


def test_daemon_receives_bounces_delivers_the_fallback_and_warns_at_risk(herald):
    import smtplib

    from tests.daemon import DaemonProcess, until

    herald.set_campaign("channels: [email, inapp]", "channels: [email]")
    herald.set_campaign("fallback: null", "fallback: inapp")
    assert herald("users", "import", USERS).exit_code == 0
    listen = _free_port()
    herald.env["HERALD_BOUNCE_LISTEN"] = f"127.0.0.1:{listen}"
    for server in serve(Mailbox()):
        with DaemonProcess(herald, server.url, "--summary", "0.3") as daemon:
            daemon.wait_log("planned", campaign="ai-training-notice")
            server.wait_for(5, timeout=30)

            def anna() -> dict[str, Any] | None:
                row = _rows(herald).get(("de-1", "email"))
                return row if row and row["status"] == "sent" else None

            row = until(anna, 15, daemon.output)
            verp = return_path("bounces@" + DOMAIN, row["id"], _keys(herald))
            with smtplib.SMTP("127.0.0.1", listen, timeout=10) as client:
                client.sendmail("", [verp], dsn(verp, row["message_id"]))

            def fallback_delivered() -> bool:
                inapp = _rows(herald).get(("de-1", "inapp"))
                return bool(inapp and inapp["status"] == "delivered")

            until(fallback_delivered, 15, daemon.output)
            warned = daemon.wait_log(
                "at risk: bounce rate above delivery.max_bounce_rate; consider herald pause",
                timeout=15,
            )
            assert (warned["bounce_rate"], warned["max_bounce_rate"]) == (0.2, 0.05)
            assert daemon.stop() == 0, daemon.output()
    assert _rows(herald)[("de-1", "email")]["status"] == "bounced"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
