"""Around the service: `herald serve` as a process, token expiry, the objections export,
and a database from before objections."""

import csv
import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import httpx
import pytest
from sqlalchemy import text

from engine.delivery.tokens import Keys
from engine.store import open_database
from tests.daemon import DaemonProcess, until
from tests.service import free_port, serve_campaign

USERS = """id,email,name,country,locale,timezone
de-1,anna@example.com,Anna Müller,DE,de,Europe/Berlin
fr-1,luc@example.com,Luc Dupont,FR,fr,Europe/Paris
"""


@pytest.fixture
def sent(herald, tmp_path):
    users = tmp_path / "users.csv"
    users.write_text(USERS, encoding="utf-8")
    assert herald("users", "import", str(users)).exit_code == 0
    return herald


def _launch(herald) -> None:
    assert herald("plan", "ai-training-notice").exit_code == 0
    assert herald("send", "ai-training-notice").exit_code == 0


def _token(herald, user_id: str) -> str:
    keys = Keys(herald.env["HERALD_SECRET"].encode())
    return keys.token(keys.token_id("ai-training-notice", user_id))


def test_herald_serve_binds_loopback_and_keeps_tokens_out_of_the_log(sent):
    _launch(sent)
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-c", "from engine.cli import main; main()", "serve", "--port", str(port)],
        cwd=sent.project.root,
        env={**os.environ, **sent.env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    token = _token(sent, "de-1")
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(f"{url}/healthz")
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "herald serve did not start"
                assert process.poll() is None, process.stdout.read() if process.stdout else ""
                time.sleep(0.1)
        assert "Ihr Widerspruchsrecht" in httpx.get(f"{url}/object/{token}").text
        assert httpx.post(f"{url}/object/{token}", data={}).status_code == 200
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=20)
    # uvicorn shuts down cleanly, then re-raises the signal it caught
    assert process.returncode in (0, -signal.SIGTERM), output
    assert "Finished server process" in output
    assert f"http://127.0.0.1:{port}" in output  # loopback unless told otherwise
    assert "no API key" in output  # the feed API refuses everything: said at start
    assert "route=/object/{token} status=200" in output
    assert token not in output
    assert token.split(".")[0] not in output
    assert "anna@example.com" not in output


def test_a_running_daemon_sends_the_confirmation(sent, smtp_server):
    _launch(sent)  # every notice went out, through the outbox
    with DaemonProcess(sent, smtp_server.url) as daemon, serve_campaign(sent) as s:
        daemon.wait_log("started")
        assert s.http.post(f"/object/{_token(sent, 'de-1')}", data={}).status_code == 200
        until(lambda: smtp_server.mailbox.messages, 30, daemon.output)
        assert daemon.stop() == 0
    [mail] = smtp_server.mailbox.messages
    assert mail["Subject"] == "Wir haben Ihren Widerspruch erfasst"
    assert "@" not in "".join(daemon.raw)


def test_an_expired_token_gets_the_error_page(sent, monkeypatch):
    sent.set_campaign("token_ttl_days: null", "token_ttl_days: 1")
    _launch(sent)
    keys = Keys(sent.env["HERALD_SECRET"].encode())
    token_id = keys.token_id("ai-training-notice", "de-1")
    current = keys.token(token_id, timed=True)
    untimed = keys.token(token_id)
    monkeypatch.setattr("itsdangerous.timed.time.time", lambda: 1_000_000_000.0)
    old = keys.token(token_id, timed=True)
    monkeypatch.undo()
    with serve_campaign(sent) as s:
        assert s.http.get(f"/object/{current}").status_code == 200
        for token in (old, untimed):  # expired, or not the kind this campaign issues
            page = s.http.get(f"/object/{token}")
            assert page.status_code == 404
            assert "does not end when a link expires" in page.text
            assert s.http.post(f"/object/{token}", data={}).status_code == 404
        assert s.count("objection") == 0


def test_objections_export(sent):
    _launch(sent)
    with serve_campaign(sent) as s:
        s.http.post(f"/object/{_token(sent, 'de-1')}", data={"reason": "private, kept here"})
        s.http.post("/api/objections", json={"token": _token(sent, "fr-1")})
    jsonl = sent("objections", "export", "--format", "jsonl")
    assert jsonl.exit_code == 0, jsonl.output
    rows = [json.loads(line) for line in jsonl.output.splitlines()]
    assert [r["user_id"] for r in rows] == ["de-1", "fr-1"]
    assert rows[0] == {
        "user_id": "de-1",
        "purpose": "ai-training",
        "campaign": "ai-training-notice",
        "objected_at": rows[0]["objected_at"],
        "channel": "email",
        "locale": "de",
        "via": "page",
    }
    assert rows[1]["via"] == "api"
    assert rows[1]["locale"] == "fr"
    assert "kept here" not in jsonl.output
    assert "@" not in jsonl.output
    table = list(csv.DictReader(io.StringIO(sent("objections", "export").output)))
    assert len(table) == 2
    assert table[0]["objected_at"] == rows[0]["objected_at"]
    assert sent("objections", "export", "--purpose", "marketing").output == (
        "user_id,purpose,campaign,objected_at,channel,locale,via\n"
    )
    assert sent("objections", "export", "--since", "2999-01-01").output.count("\n") == 1
    assert sent("objections", "export", "--since", rows[0]["objected_at"]).output.count("\n") == 3
    out = sent.project.path("objections.csv")
    assert "2 objection(s) written" in sent("objections", "export", "--out", str(out)).output
    assert out.read_text(encoding="utf-8").count("\n") == 3
    nowhere = sent.project.path("no-such-folder/objections.csv")
    refused = sent("objections", "export", "--out", str(nowhere))
    assert refused.exit_code == 1
    assert f"cannot write {nowhere}" in refused.output
    bad = sent("objections", "export", "--since", "last tuesday")
    assert bad.exit_code == 2
    assert "ISO 8601" in bad.output


OLD_DELIVERY = """CREATE TABLE delivery (
    id INTEGER NOT NULL, campaign_id VARCHAR NOT NULL, user_id VARCHAR NOT NULL,
    channel VARCHAR NOT NULL, country VARCHAR NOT NULL, locale VARCHAR NOT NULL,
    locale_source VARCHAR NOT NULL, fell_back BOOLEAN NOT NULL, is_fallback BOOLEAN NOT NULL,
    token_id VARCHAR NOT NULL, status VARCHAR NOT NULL, attempts INTEGER NOT NULL,
    next_attempt_at FLOAT NOT NULL, lease_owner VARCHAR, lease_until FLOAT,
    interrupted INTEGER NOT NULL, message_id VARCHAR, content_sha256 VARCHAR, reply VARCHAR,
    last_error VARCHAR, sent_at FLOAT, PRIMARY KEY (id), UNIQUE (campaign_id, user_id, channel)
)"""


def test_a_database_from_before_objections_is_migrated(tmp_path):
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.execute(OLD_DELIVERY)
        conn.execute(
            "CREATE INDEX ix_delivery_due ON delivery (campaign_id, status, next_attempt_at)"
        )
        conn.execute(
            "INSERT INTO delivery VALUES (7, 'c', 'u', 'email', 'DE', 'de', 'user', 0, 0, 't', "
            "'sent', 1, 0, NULL, NULL, 0, '<m@x>', 'h', '250 OK', NULL, 5)"
        )
    engine = open_database(f"sqlite:///{path}")
    with engine.begin() as conn:
        row = conn.execute(text("SELECT id, message, status FROM delivery")).one()
        assert tuple(row) == (7, "notice", "sent")
        conn.execute(
            text(
                "INSERT INTO delivery (campaign_id, user_id, channel, message, country, locale, "
                "locale_source, fell_back, is_fallback, token_id, status, attempts, "
                "next_attempt_at, interrupted) VALUES ('c', 'u', 'email', 'confirmation', 'DE', "
                "'de', 'user', 0, 0, 't', 'pending', 0, 0, 0)"
            )
        )
    engine.dispose()
    again = open_database(f"sqlite:///{path}")  # a second start changes nothing
    with again.connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM delivery")).scalar() == 2
    again.dispose()
