"""`herald daemon` end to end: real processes, a real SMTP server, one SQLite file.

The `herald` fixture removes the send window, so these run at any hour."""

import json
import re
import shutil
import signal
import time
from collections import Counter
from typing import Any

from sqlalchemy import text

from tests.conftest import ROOT
from tests.daemon import DaemonProcess, until
from tests.smtp import Mailbox, serve

CAMPAIGN = "ai-training-notice"


def _later(yaml_text: str) -> str:
    """The shipped campaign under another id, starting in 2999."""
    for old, new in (
        (f"id: {CAMPAIGN}", "id: later-notice"),
        ("start: 2024-05-08T07:00:00Z", "start: 2999-05-01T07:00:00Z"),
        ("deadline: 2024-05-27T00:00:00Z", "deadline: 2999-05-27T00:00:00Z"),
        ("effective_date: 2024-06-26", "effective_date: 2999-06-26"),
    ):
        assert old in yaml_text
        yaml_text = yaml_text.replace(old, new)
    return yaml_text


def _settled(mailbox: Mailbox, quiet_s: float = 1.0) -> int:
    """How many messages arrived, once none has arrived for `quiet_s`."""
    count, since = len(mailbox.messages), time.monotonic()
    while time.monotonic() - since < quiet_s:
        time.sleep(0.05)
        if len(mailbox.messages) != count:
            count, since = len(mailbox.messages), time.monotonic()
    return count


def _statuses(herald) -> Counter[str]:
    with herald.database().connect() as conn:
        return Counter(
            dict(conn.execute(text("SELECT status, count(*) FROM delivery GROUP BY status")).all())
        )


def _status_json(herald) -> dict[str, Any]:
    result = herald("status", "--format", "json")
    assert result.exit_code == 0, result.output
    status: dict[str, Any] = json.loads(result.stdout)
    return status


def test_daemon_picks_up_sends_stops_resumes_and_refuses_changes(herald, tmp_path):
    # plan_until in the future: the replan after an import adds the new users
    # (tests/test_decisions.py shows the replan after plan_until).
    herald.set_campaign("rate_per_second: 100000", "rate_per_second: 40\n  plan_until: 2999-01-01")
    assert herald("users", "generate", "--count", "300").exit_code == 0
    staged = tmp_path / f"{CAMPAIGN}.yaml"
    shutil.move(herald.project.campaign, staged)  # the daemon starts with no campaign
    mailbox = Mailbox()
    for server in serve(mailbox):
        with DaemonProcess(herald, server.url) as daemon:
            daemon.wait_log("started")
            until(lambda: _status_json(herald)["daemons"], 10, lambda: "no heartbeat")
            status = _status_json(herald)
            assert status["campaigns"] == []
            assert status["daemons"][0]["alive"] is True

            # A campaign that starts later is scheduled, and rescheduled when it changes.
            later = herald.project.root / "campaigns" / "later-notice.yaml"
            later_yaml = _later(staged.read_text(encoding="utf-8"))
            later.write_text(later_yaml, encoding="utf-8")
            spec = daemon.wait_log("scheduled", campaign="later-notice")["spec"]
            later.write_text(later_yaml.replace("title: ", "title: v2 "), encoding="utf-8")

            def rescheduled(old: str = spec) -> bool:
                return any(e["spec"] != old for e in daemon.logged("scheduled", "later-notice"))

            until(rescheduled, 30, daemon.output)
            # A file that does not validate is refused and logged; the others run on.
            broken = herald.project.root / "campaigns" / "broken-notice.yaml"
            broken.write_text("id: broken-notice\nshedule: {}\n", encoding="utf-8")
            refused = daemon.wait_log("refused campaign file", campaign="broken-notice")
            assert any("shedule" in p for p in refused["problems"])

            shutil.move(staged, herald.project.campaign)  # dropped in: picked up, no restart
            daemon.wait_log("planned", campaign=CAMPAIGN)
            server.wait_for(20, timeout=30)
            code = daemon.stop(signal.SIGTERM)
            stopped_at = len(mailbox.messages)
            assert code == 0, daemon.output()
            assert daemon.logged("stopping")
            assert daemon.logged("stopped")
            assert len(daemon.lines) == len(daemon.raw)  # every line is JSON
            assert "@" not in "".join(daemon.raw)  # ids and counts, never an address
        statuses = _statuses(herald)
        assert statuses["sending"] == 0  # nothing left claimed by the stopped daemon
        assert statuses["pending"] > 0, "the campaign finished before SIGTERM: slow it down"
        assert stopped_at < 300

        with DaemonProcess(herald, server.url) as daemon:
            herald.project.edit(
                f"templates/{CAMPAIGN}/email_subject.txt", "{% trans", "URGENT {% trans"
            )
            refused = daemon.wait_log("refused change", campaign=CAMPAIGN)
            assert f"templates/{CAMPAIGN}/email_subject.txt" in refused["changes"]

            before_pause = len(mailbox.messages)
            assert herald("pause", CAMPAIGN).exit_code == 0
            paused_at = time.time()
            daemon.wait_log("paused", campaign=CAMPAIGN, timeout=10)
            _settled(mailbox)  # the messages in flight at the pause land
            time.sleep(1.5)
            # Messages already packed when the pause came may still land (a pause stops
            # claiming, it does not recall what is in flight); nothing packed after it may.
            # A message's Date is when it was packed, to the second.
            late = [
                (m["Date"], m["Message-ID"])
                for m in mailbox.messages[before_pause:]
                if m["Date"].datetime.timestamp() > paused_at + 1
            ]
            assert not late, f"sent while paused: {late}\n{daemon.output()}"
            states = {c["id"]: c["state"] for c in _status_json(herald)["campaigns"]}
            assert states[CAMPAIGN] == "paused"

            assert herald("resume", CAMPAIGN).exit_code == 0
            daemon.wait_log("done", campaign=CAMPAIGN, timeout=60)
            before = {c["id"]: c for c in _status_json(herald)["campaigns"]}[CAMPAIGN]

            # Users imported after the start are planned and told too (5 of them match).
            assert herald("users", "import", str(ROOT / "tests" / "users.csv")).exit_code == 0

            def told(address: str = "anna@example.com") -> bool:
                return any(m["To"].addresses[0].addr_spec == address for m in mailbox.messages)

            def caught_up(
                want: tuple[int, str] = (before["users"]["targeted"] + 5, "done"),
            ) -> bool:
                c = {c["id"]: c for c in _status_json(herald)["campaigns"]}[CAMPAIGN]
                return (c["users"]["targeted"], c["state"]) == want

            until(told, 30, daemon.output)
            until(caught_up, 30, daemon.output)
            status = _status_json(herald)
            assert daemon.stop() == 0

    campaigns = {c["id"]: c for c in status["campaigns"]}
    assert campaigns["later-notice"]["state"] == "scheduled"
    assert campaigns["later-notice"]["title"].startswith("v2 ")
    assert campaigns["broken-notice"]["state"] == "refused"
    assert "shedule" in campaigns["broken-notice"]["problem"]
    campaign = campaigns[CAMPAIGN]
    assert campaign["state"] == "done"
    deliveries = campaign["deliveries"]
    assert deliveries["pending"] == deliveries["deferred"] == deliveries["failed"] == 0
    assert deliveries["notified"] == sum(_statuses(herald).values())
    assert "email_subject.txt" in campaign["problem"]  # the refused change is on record
    with herald.database().connect() as conn:
        email_ids = {
            r[0]
            for r in conn.execute(text("SELECT message_id FROM delivery WHERE channel = 'email'"))
        }
        kinds = Counter(r[0] for r in conn.execute(text("SELECT kind FROM event")))
    assert set(_statuses(herald)) == {"sent", "delivered"}  # every delivery final, none lost
    received = mailbox.message_ids()
    assert set(received) == email_ids
    assert len(received) == len(email_ids)
    assert not any(m["Subject"].startswith("URGENT") for m in mailbox.messages)
    assert kinds["paused"] == 1
    assert kinds["resumed"] == 1
    verified = herald("evidence", "verify", "--db")
    assert verified.exit_code == 0, verified.output
    assert re.search(r"\d+ checkpoint\(s\) signed by", verified.stdout)  # the daemon wrote them


def test_two_daemons_on_one_database_never_send_a_delivery_twice(herald):
    assert herald("users", "generate", "--count", "5000").exit_code == 0
    mailbox = Mailbox()
    for server in serve(mailbox):
        with (
            DaemonProcess(herald, server.url) as first,
            DaemonProcess(herald, server.url) as second,
        ):
            until(
                lambda: [c["state"] for c in _status_json(herald)["campaigns"]] == ["done"],
                180,
                lambda: f"not done:\n{first.output()}\n{second.output()}",
            )
            assert first.stop() == 0
            assert second.stop() == 0
    with herald.database().connect() as conn:
        email_ids = [
            r[0]
            for r in conn.execute(text("SELECT message_id FROM delivery WHERE channel = 'email'"))
        ]
        outcomes = Counter(
            r[0]
            for r in conn.execute(
                text("SELECT delivery_id FROM event WHERE kind IN ('sent', 'delivered')")
            )
        )
        total = conn.execute(text("SELECT count(*) FROM delivery")).scalar()
    assert set(_statuses(herald)) == {"sent", "delivered"}
    assert len(outcomes) == total
    assert set(outcomes.values()) == {1}
    received = mailbox.message_ids()
    assert len(received) == len(email_ids) == len(set(received))  # no email twice
    assert set(received) == set(email_ids)
    sent_by = [sum(e.get("sent", 0) for e in d.logged("sent")) for d in (first, second)]
    assert all(sent_by), f"one daemon did all the work: {sent_by}"


def test_a_daemon_killed_is_not_alive_in_status_though_its_heartbeat_is_fresh(herald, tmp_path):
    shutil.move(herald.project.campaign, tmp_path / f"{CAMPAIGN}.yaml")  # nothing to do
    for server in serve(Mailbox()):
        with DaemonProcess(herald, server.url) as daemon:
            daemon.wait_log("started")
            until(lambda: _status_json(herald)["daemons"], 10, lambda: "no heartbeat")
            assert daemon.stop(signal.SIGKILL) == -signal.SIGKILL
            [gone] = _status_json(herald)["daemons"]  # within its heartbeat's 15 s
            assert gone["alive"] is False
