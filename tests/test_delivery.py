"""End to end: YAML -> plan -> send through a real aiosmtpd server -> report and evidence."""

import json
import re
from typing import Any

import pytest
from sqlalchemy import text

from engine.delivery.tokens import Keys
from tests.conftest import ROOT
from tests.smtp import Mailbox, refuse_login, serve

USERS = str(ROOT / "tests" / "users.csv")


def _deliveries(herald) -> dict[tuple[str, str], dict[str, Any]]:
    with herald.database().connect() as conn:
        rows = conn.execute(text("SELECT * FROM delivery")).mappings()
        return {(r["user_id"], r["channel"]): dict(r) for r in rows}


def _report(herald) -> dict[str, Any]:
    result = herald("report", "ai-training-notice", "--format", "json")
    assert result.exit_code == 0, result.output
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def _launch(herald, smtp: str | None = None, *send_args: str):
    assert herald("users", "import", USERS).exit_code == 0
    planned = herald("plan", "ai-training-notice")
    assert planned.exit_code == 0, planned.output
    return herald("send", "ai-training-notice", "--max-wait", "5", *send_args, smtp=smtp)


def test_send_delivers_localized_mail_only_to_the_audience(herald, smtp_server):
    result = _launch(herald, smtp_server.url)
    assert result.exit_code == 0, result.output
    mails = {m["To"].addresses[0].addr_spec: m for m in smtp_server.mailbox.messages}
    assert set(mails) == {
        "anna@example.com",
        "luc@example.com",
        "zofia@example.com",
        "ian@example.com",
        "eleni@example.com",
    }  # not the US user
    anna = mails["anna@example.com"]
    assert anna["Subject"].startswith("Ab dem 26. Juni 2024 nutzen wir")
    assert "26. Juni 2024" in anna["Subject"]
    assert anna["Content-Language"] == "de"
    assert anna["To"].addresses[0].display_name == "Anna Müller"
    assert anna["From"].addresses[0].addr_spec == "privacy@example.com"
    assert anna["MIME-Version"] == "1.0"
    assert anna["Date"] is not None
    assert anna.get_content_type() == "multipart/alternative"
    text_part = anna.get_body(("plain",)).get_content()
    html_part = anna.get_body(("html",)).get_content()
    assert "Widerspruchsrecht" in text_part
    assert "Widerspruchsrecht" in html_part
    assert "List-Unsubscribe" not in anna
    assert "<img" not in html_part
    assert "26 czerwca 2024" in mails["zofia@example.com"]["Subject"]
    # en_GB reader: a British date (issue 15)
    assert mails["ian@example.com"]["Subject"] == (
        "From 26 June 2024, we will use your public content to train AI"
    )
    rows = _deliveries(herald)
    assert ("us-1", "email") not in rows
    assert {r["status"] for r in rows.values()} == {"sent", "delivered"}
    anna_row = rows[("de-1", "email")]
    assert anna_row["message_id"] == anna["Message-ID"]
    assert anna_row["reply"].startswith("250 2.0.0 OK queued as Q")
    report = _report(herald)
    assert (report["targeted"], report["notified"], report["pending"]) == (5, 5, 0)
    assert report["coverage_equation_holds"]


def test_objection_link_is_personal_and_opaque(herald, smtp_server):
    assert _launch(herald, smtp_server.url).exit_code == 0
    links = {}
    for mail in smtp_server.mailbox.messages:
        body = mail.get_body(("plain",)).get_content()
        link = next(w for w in body.split() if w.startswith("https://privacy.example.com/object/"))
        links[mail["To"].addresses[0].addr_spec] = link
    assert len(set(links.values())) == len(links)  # one per user
    for address, link in links.items():
        token = link.rsplit("/", 1)[1]
        assert address.split("@")[0] not in token.lower()
        for user_id in ("de-1", "fr-1", "pl-1", "gb-1", "el-1"):
            assert user_id not in token
    with herald.database().connect() as conn:
        inbox = conn.execute(text("SELECT user_id, objection_url FROM inapp_notification"))
        by_user = dict(inbox.all())
    assert by_user["de-1"] == links["anna@example.com"]  # same link in both channels


def test_rerun_does_not_resend(herald, smtp_server):
    assert _launch(herald, smtp_server.url).exit_code == 0
    assert herald("plan", "ai-training-notice").exit_code == 0
    again = herald("send", "ai-training-notice", smtp=smtp_server.url)
    assert again.exit_code == 0
    assert "ai-training-notice: nothing was due\n" in again.stdout
    assert len(smtp_server.mailbox.messages) == 5


def test_plan_is_idempotent_and_adds_new_matches(herald, tmp_path):
    # Until plan_until a rerun adds new users (tests/test_decisions.py: and after it, not).
    herald.set_campaign(
        "rate_per_second: 100000", "rate_per_second: 100000\n  plan_until: 2999-01-01"
    )
    assert herald("users", "import", USERS).exit_code == 0
    first = herald("plan", "ai-training-notice")
    assert "5 users targeted, 10 new deliveries planned" in first.stdout
    again = herald("plan", "ai-training-notice")
    assert "5 users targeted, 0 new deliveries planned" in again.stdout
    late = tmp_path / "late.csv"
    late.write_text("id,email,name,country\nno-1,kari@example.com,Kari,NO\n", encoding="utf-8")
    assert herald("users", "import", str(late)).exit_code == 0
    third = herald("plan", "ai-training-notice")
    assert "6 users targeted, 2 new deliveries planned" in third.stdout
    assert _deliveries(herald)[("no-1", "email")]["locale"] == "nb"


def test_451_is_retried_then_sent(herald):
    mailbox = Mailbox(data_replies=["451 4.3.0 try again later"])
    for server in serve(mailbox):
        result = _launch(herald, server.url, "--concurrency", "1")
        assert result.exit_code == 0, result.output
        assert len(mailbox.messages) == 5
    rows = _deliveries(herald)
    retried = [r for r in rows.values() if r["attempts"] == 2]
    assert len(retried) == 1
    assert (retried[0]["status"], retried[0]["channel"]) == ("sent", "email")
    assert _event_kinds(herald, retried[0]["id"]) == ["planned", "deferred", "sent"]


def test_a_sender_refused_for_now_stops_the_run_and_fails_no_one(herald):
    """A 4xx to MAIL FROM is about our sender, so the same for every recipient (Postfix
    answers 450 for a sender domain it cannot resolve): the run stops, no attempt counts
    against anyone, and the next run sends the rest."""
    mailbox = Mailbox(
        mail_replies=["250 OK", "450 4.1.8 sender address rejected: domain not found"]
    )
    for server in serve(mailbox):
        result = _launch(herald, server.url, "--concurrency", "1")
        assert result.exit_code == 1
        assert "refused our envelope sender: 450 4.1.8" in result.stderr
        assert "try again later" in result.stderr
        assert len(mailbox.messages) == 1
        rows = _deliveries(herald)
        assert "failed" not in {r["status"] for r in rows.values()}
        again = herald("send", "ai-training-notice", "--max-wait", "5", smtp=server.url)
        assert again.exit_code == 0, again.output
        assert len(mailbox.messages) == 5
    rows = _deliveries(herald)
    assert {r["status"] for r in rows.values()} == {"sent", "delivered"}
    assert {r["attempts"] for r in rows.values()} == {1}


@pytest.mark.parametrize(
    "refusal",
    [
        "554 5.7.1 <{rcpt}>: Relay access denied",  # Postfix
        "550 5.7.1 <{rcpt}>... Relaying denied. Proper authentication required.",  # Sendmail
        "550 5.7.54 SMTP; Unable to relay recipient in non-accepted domain",  # Exchange
    ],
)
def test_a_relay_that_will_not_relay_for_us_stops_the_run_and_fails_no_one(herald, refusal):
    """Every recipient refused with "relaying denied" is our login or our relay's setup,
    not the recipients': before, all were failed for good and the fallback planned."""
    mailbox = Mailbox(rcpt_reply=refusal.format(rcpt="anna@example.com"))
    for server in serve(mailbox):
        result = _launch(herald, server.url)
        assert result.exit_code == 1
        assert f"127.0.0.1:{server.port} refuses to relay for us: {refusal[:3]}" in result.stderr
        assert "No one was marked failed" in result.stderr
    emails = [r for k, r in _deliveries(herald).items() if k[1] == "email"]
    assert {(r["status"], r["attempts"]) for r in emails} == {("pending", 0)}


def test_550_fails_and_the_inapp_fallback_is_delivered(herald):
    herald.set_campaign("channels: [email, inapp]", "channels: [email]")
    herald.set_campaign("fallback: null", "fallback: inapp")
    mailbox = Mailbox(rcpt_reply="550 5.1.1 no such user")
    for server in serve(mailbox):
        result = _launch(herald, server.url)
        assert result.exit_code == 0, result.output
    rows = _deliveries(herald)
    email = rows[("de-1", "email")]
    assert email["status"] == "failed"
    assert email["attempts"] == 1
    assert email["last_error"].startswith("550 5.1.1")
    assert rows[("de-1", "inapp")]["status"] == "delivered"
    report = _report(herald)
    assert report["notified"] == 5
    assert report["fallback_planned"] == 5
    assert report["failure_reasons"][0]["count"] == 5


def test_dropped_connection_mid_batch_loses_nothing(herald):
    """The server hangs up after two messages, before answering them: it may have taken
    them (RFC 1047), so each is retried and its send is counted as a possible duplicate."""
    mailbox = Mailbox(drop_at={2, 4})
    for server in serve(mailbox):
        result = _launch(herald, server.url, "--concurrency", "2")
        assert result.exit_code == 0, result.output
        assert len(set(mailbox.message_ids())) == 5
    rows = _deliveries(herald).values()
    assert {r["status"] for r in rows} == {"sent", "delivered"}
    retried = [r for r in rows if r["attempts"] == 2]
    assert len(retried) == 2
    assert _report(herald)["possible_duplicates"] == 2
    with herald.database().connect() as conn:
        for row in retried:
            query = text("SELECT kind, body FROM event WHERE delivery_id = :d ORDER BY seq")
            found = conn.execute(query, {"d": row["id"]})
            events = [(k, json.loads(body)["data"]) for k, body in found]
            assert [k for k, _ in events] == ["planned", "deferred", "sent"]
            assert events[1][1]["possibly_delivered"] is True
            assert events[2][1]["possible_duplicate"] is True
    assert herald("evidence", "verify", "--db").exit_code == 0
    with herald.database().begin() as conn:  # an insider hides the duplicates
        conn.execute(text("UPDATE delivery SET interrupted = 0"))
    hidden = herald("evidence", "verify", "--db")
    assert hidden.exit_code == 1
    assert "a possible duplicate or not" in hidden.stderr


def test_bad_credentials_stop_the_run_with_a_clear_message(herald):
    for server in serve(Mailbox(), authenticator=refuse_login, auth_require_tls=False):
        url = f"smtp://herald:wrong@127.0.0.1:{server.port}?tls=none&allow_plaintext=true"
        result = _launch(herald, url)
    assert result.exit_code == 1
    assert "rejected our setup" in result.stderr
    assert "535" in result.stderr
    statuses = {r["status"] for k, r in _deliveries(herald).items() if k[1] == "email"}
    assert "failed" not in statuses  # our password is not the recipients' fault


def test_user_without_email_fails_email_but_gets_inapp(herald, tmp_path):
    path = tmp_path / "u.csv"
    path.write_text("id,email,name,country\nnomail,,Nomail,DE\n", encoding="utf-8")
    assert herald("users", "import", str(path)).exit_code == 0
    assert herald("plan", "ai-training-notice").exit_code == 0
    assert herald("send", "ai-training-notice").exit_code == 0  # the outbox transport
    rows = _deliveries(herald)
    assert rows[("nomail", "email")]["last_error"] == "no email address"
    assert rows[("nomail", "inapp")]["status"] == "delivered"


def test_outbox_writes_one_eml_per_message(herald):
    assert _launch(herald).exit_code == 0
    files = list((herald.project.root / "var" / "outbox").glob("*.eml"))
    assert len(files) == 5


@pytest.mark.parametrize("command", ["send", "plan"])
def test_a_campaign_changed_after_it_started_is_refused_naming_the_file(herald, command):
    assert herald("users", "import", USERS).exit_code == 0
    assert herald("plan", "ai-training-notice").exit_code == 0
    herald.project.edit("templates/ai-training-notice/email.txt", "--\n", "-- \n")
    (herald.project.root / "locales" / "notes.txt").write_text("new\n")
    result = herald(command, "ai-training-notice")
    assert result.exit_code == 1
    assert "changed templates/ai-training-notice/email.txt" in result.stderr
    assert "added locales/notes.txt" in result.stderr
    assert "give the corrected campaign a new id" in result.stderr


def _event_kinds(herald, delivery_id: int) -> list[str]:
    with herald.database().connect() as conn:
        return [
            r[0]
            for r in conn.execute(
                text("SELECT kind FROM event WHERE delivery_id = :d ORDER BY seq"),
                {"d": delivery_id},
            )
        ]


@pytest.mark.parametrize("name", ["Eve\r\nBcc: evil@example.com", "<b>Eve</b>"])
def test_user_fields_cannot_inject_headers(herald, smtp_server, tmp_path, name):
    path = tmp_path / "u.jsonl"
    path.write_text(
        json.dumps({"id": "eve", "email": "eve@example.com", "name": name, "country": "DE"}) + "\n",
        encoding="utf-8",
    )
    assert herald("users", "import", str(path)).exit_code == 0
    assert herald("plan", "ai-training-notice").exit_code == 0
    assert herald("send", "ai-training-notice", smtp=smtp_server.url).exit_code == 0
    [mail] = smtp_server.mailbox.messages
    assert "Bcc" not in mail
    assert [a.addr_spec for a in mail["To"].addresses] == ["eve@example.com"]
    assert "<b>" not in mail.get_body(("html",)).get_content()


@pytest.mark.parametrize("option", ["", "?starttls=true", "?tls=starttls"])
def test_starttls_required_but_unsupported_stops_the_run(herald, smtp_server, option):
    result = _launch(herald, f"smtp://127.0.0.1:{smtp_server.port}{option}")
    assert result.exit_code == 1
    assert "did not offer STARTTLS" in result.stderr
    assert smtp_server.mailbox.messages == []
    assert "failed" not in {r["status"] for r in _deliveries(herald).values()}


def _dead_port() -> int:
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_an_outage_of_our_relay_fails_no_one_however_long_it_lasts(herald):
    """Before, each attempt on a relay that was down counted against the recipient, and
    after max_attempts (here 2) everyone had failed for good. Now the run
    stops when the relay cannot be reached, saying so, and no one fails, however many
    runs the outage lasts; once the relay answers, everyone is sent on their first try."""
    import time

    herald.set_campaign("max_attempts: 8", "max_attempts: 2")  # retries ~0.05 s apart
    port = _dead_port()
    down = f"smtp://127.0.0.1:{port}?tls=none&timeout=2"
    runs = [_launch(herald, down, "--max-wait", "0", "--concurrency", "1")]
    for _ in range(3):
        time.sleep(0.1)  # past the retry delay
        runs.append(
            herald("send", "ai-training-notice", "--max-wait", "0", "--concurrency", "1", smtp=down)
        )
    for run in runs:
        assert run.exit_code == 1, run.output
        assert f"the SMTP relay cannot be reached: cannot connect to 127.0.0.1:{port}" in run.stderr
        assert "No one was marked failed" in run.stderr
    emails = [r for k, r in _deliveries(herald).items() if k[1] == "email"]
    assert {r["status"] for r in emails} <= {"pending", "deferred"}
    assert {r["attempts"] for r in emails} == {0}
    mailbox = Mailbox()
    for server in serve(mailbox):
        again = herald("send", "ai-training-notice", "--max-wait", "5", smtp=server.url)
        assert again.exit_code == 0, again.output
    assert len(mailbox.messages) == 5
    emails = [r for k, r in _deliveries(herald).items() if k[1] == "email"]
    assert {(r["status"], r["attempts"]) for r in emails} == {("sent", 1)}


def test_two_workers_share_the_queue_without_sending_twice(herald, smtp_server):
    assert herald("users", "generate", "--count", "400").exit_code == 0
    assert herald("plan", "ai-training-notice").exit_code == 0
    result = herald("send", "ai-training-notice", "--workers", "2", smtp=smtp_server.url)
    assert result.exit_code == 0, result.output
    ids = smtp_server.mailbox.message_ids()
    assert len(ids) == len(set(ids))
    emails = [r for k, r in _deliveries(herald).items() if k[1] == "email"]
    assert len(ids) == len(emails)
    assert {r["status"] for r in emails} == {"sent"}
    assert {r["lease_owner"] for r in emails} == {None}  # no lease left behind


def test_demo_runs_end_to_end_and_is_safe_to_rerun(herald):
    first = herald("demo", "--users", "300")
    assert first.exit_code == 0, first.output
    assert "targeted = notified + failed + pending: holds" in first.stdout
    link = re.search(r"http://127\.0\.0\.1:8080/object/(\S+)", first.stdout)
    assert link, first.stdout  # one user's objection page, for herald serve
    assert Keys(herald.env["HERALD_SECRET"].encode()).open_token(link.group(1)) is not None
    again = herald("demo", "--users", "300")
    assert again.exit_code == 0
    assert "planned 0 new deliveries" in again.stdout
    report = _report(herald)
    assert report["pending"] == 0
    assert report["notified"] == report["targeted"] > 200


def test_report_writes_table_or_json_to_a_file(herald, tmp_path):
    assert _launch(herald).exit_code == 0
    table, data = tmp_path / "report.txt", tmp_path / "report.json"
    assert herald("report", "ai-training-notice", "--out", str(table)).exit_code == 0
    assert (
        herald("report", "ai-training-notice", "--format", "json", "--out", str(data)).exit_code
        == 0
    )
    assert "targeted = notified + failed + pending: holds" in table.read_text("utf-8")
    assert json.loads(data.read_text("utf-8"))["by_country"]["AT"]["notified"] == 1


def test_internationalised_addresses_never_stop_the_run(herald, smtp_server, tmp_path):
    path = tmp_path / "u.jsonl"
    rows = [
        {"id": "idn-domain", "email": "jose@exämple.com", "name": "José", "country": "ES"},
        {"id": "idn-local", "email": "josé@example.com", "name": "José", "country": "ES"},
        {"id": "plain", "email": "k@example.com", "country": "ES"},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    assert herald("users", "import", str(path)).exit_code == 0
    assert herald("plan", "ai-training-notice").exit_code == 0
    result = herald("send", "ai-training-notice", smtp=smtp_server.url)
    assert result.exit_code == 0, result.output
    rows_by_user = _deliveries(herald)
    assert rows_by_user[("idn-domain", "email")]["status"] == "sent"  # punycode domain
    assert rows_by_user[("plain", "email")]["status"] == "sent"
    local = rows_by_user[("idn-local", "email")]
    assert local["status"] == "failed"  # this test server does not offer SMTPUTF8
    assert "SMTPUTF8" in local["last_error"]
    assert rows_by_user[("idn-local", "inapp")]["status"] == "delivered"
    recipients = {m["To"].addresses[0].addr_spec for m in smtp_server.mailbox.messages}
    assert recipients == {"jose@xn--exmple-cua.com", "k@example.com"}


def test_internationalised_local_part_is_sent_where_smtputf8_is_offered(herald, tmp_path):
    path = tmp_path / "u.jsonl"
    path.write_text(
        json.dumps({"id": "idn", "email": "josé@example.com", "name": "José", "country": "ES"})
        + "\n",
        encoding="utf-8",
    )
    assert herald("users", "import", str(path)).exit_code == 0
    assert herald("plan", "ai-training-notice").exit_code == 0
    for server in serve(Mailbox(), enable_SMTPUTF8=True, decode_data=False):
        assert herald("send", "ai-training-notice", smtp=server.url).exit_code == 0
        [mail] = server.mailbox.messages
    raw_to = mail["To"].addresses[0].addr_spec.encode("utf-8", "surrogateescape")
    assert raw_to.decode("utf-8") == "josé@example.com"  # UTF-8 on the wire (RFC 6532)
    assert _deliveries(herald)[("idn", "email")]["status"] == "sent"


@pytest.mark.parametrize("future", [False, True], ids=["dates-past", "dates-ahead"])
def test_report_splits_notices_by_deadline_and_effective_date(herald, future):
    if future:  # the shipped dates are in 2024; move the deadline and the change ahead
        herald.set_campaign("deadline: 2024-05-27T00:00:00Z", "deadline: 2999-05-27T00:00:00Z")
        herald.set_campaign("effective_date: 2024-06-26", "effective_date: 2999-06-26")
    assert _launch(herald).exit_code == 0
    report = _report(herald)
    notified = report["notified"]
    assert notified == 5
    on_time = notified if future else 0
    assert report["notified_before_deadline"] == on_time
    assert report["notified_late"] == notified - on_time
    assert report["notified_before_effective_date"] == on_time
    assert report["notified_after_effective_date"] == notified - on_time
    table = herald("report", "ai-training-notice").stdout
    assert "notified after the effective date" in table
