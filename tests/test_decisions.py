"""Three delivery decisions (README "Delivery semantics"): objectors are not told again about
the same purpose, a pause never holds a confirmation, and users new after plan_until are not
told of a change that is no change for them. Over real processes: the service on a loopback
port, the daemon as a process, an SMTP server, and `herald evidence verify` after each."""

import json
import time
from typing import Any

from sqlalchemy import text

from engine.delivery.tokens import Keys
from tests.daemon import DaemonProcess, until
from tests.service import serve_campaign
from tests.smtp import Mailbox, serve

CAMPAIGN = "ai-training-notice"
USERS = """id,email,name,country,locale,timezone
de-1,anna@example.com,Anna Müller,DE,de,Europe/Berlin
de-2,jonas@example.com,Jonas Weber,DE,de,Europe/Berlin
fr-1,luc@example.com,Luc Dupont,FR,fr,Europe/Paris
"""


def _import(herald, tmp_path, rows: str, name: str = "users.csv") -> None:
    path = tmp_path / name
    path.write_text(rows, encoding="utf-8")
    result = herald("users", "import", str(path))
    assert result.exit_code == 0, result.output


def _token(herald, user_id: str, campaign: str = CAMPAIGN) -> str:
    keys = Keys(herald.env["HERALD_SECRET"].encode())
    return keys.token(keys.token_id(campaign, user_id))


def _copy_campaign(herald, new_id: str, *extra: tuple[str, str]) -> None:
    """The shipped campaign under another id, for the same purpose."""
    source = herald.project.campaign.read_text(encoding="utf-8")
    for old, new in ((f"id: {CAMPAIGN}", f"id: {new_id}"), *extra):
        assert old in source
        source = source.replace(old, new)
    (herald.project.root / "campaigns" / f"{new_id}.yaml").write_text(source, encoding="utf-8")


def _rows(herald, sql: str, **params: Any) -> list[Any]:
    engine = herald.database()
    try:
        with engine.connect() as conn:
            return list(conn.execute(text(sql), params).all())
    finally:
        engine.dispose()


def _audiences(herald, campaign: str) -> list[dict[str, Any]]:
    rows = _rows(
        herald,
        "SELECT body FROM event WHERE campaign_id = :c AND kind = 'audience' ORDER BY seq",
        c=campaign,
    )
    return [json.loads(r[0])["data"] for r in rows]


def _planned(herald, campaign: str) -> set[str]:
    rows = _rows(
        herald,
        "SELECT DISTINCT user_id FROM delivery WHERE campaign_id = :c AND message = 'notice'",
        c=campaign,
    )
    return {r[0] for r in rows}


def _status(herald, campaign: str = CAMPAIGN) -> dict[str, Any]:
    result = herald("status", campaign, "--format", "json")
    assert result.exit_code == 0, result.output
    [found] = json.loads(result.stdout)["campaigns"]
    return dict(found)


def _report(herald, campaign: str) -> dict[str, Any]:
    result = herald("report", campaign, "--format", "json")
    assert result.exit_code == 0, result.output
    report: dict[str, Any] = json.loads(result.stdout)
    assert report["coverage_equation_holds"]
    return report


def _verified(herald) -> None:
    result = herald("evidence", "verify", "--db")
    assert result.exit_code == 0, result.output


def test_objectors_are_left_out_of_a_later_notice_for_the_same_purpose(herald, tmp_path):
    _import(herald, tmp_path, USERS)
    assert herald("plan", CAMPAIGN).exit_code == 0
    assert herald("send", CAMPAIGN).exit_code == 0  # the outbox
    assert _status(herald)["state"] == "done"
    with serve_campaign(herald) as s:
        assert s.http.post(f"/object/{_token(herald, 'de-1')}", data={}).status_code == 200

    # Every notice is final, but the objector's confirmation waits: not done.
    status = _status(herald)
    assert (status["state"], status["confirmations_pending"]) == ("sending", 1)
    # A pause holds notices only: `herald send` still sends the confirmation.
    assert herald("pause", CAMPAIGN).exit_code == 0
    assert herald("send", CAMPAIGN).exit_code == 0
    [(state,)] = _rows(herald, "SELECT status FROM delivery WHERE message = 'confirmation'")
    assert state == "sent"
    assert herald("resume", CAMPAIGN).exit_code == 0
    status = _status(herald)
    assert (status["state"], status["confirmations_pending"]) == ("done", 0)
    # The campaign's own objector stays targeted when it plans again: they were told.
    assert herald("plan", CAMPAIGN).exit_code == 0
    assert _audiences(herald, CAMPAIGN)[-1]["excluded"] == {}

    # A second notice for the same purpose leaves the objector out, and says so.
    _copy_campaign(herald, "second-notice")
    planned = herald("plan", "second-notice")
    assert planned.exit_code == 0, planned.output
    assert "2 users targeted" in planned.stdout
    assert _planned(herald, "second-notice") == {"de-2", "fr-1"}
    [audience] = _audiences(herald, "second-notice")
    assert audience["excluded"] == {"objected": 1}
    assert audience["by_country"]["DE"] == {
        "considered": 2,
        "targeted": 1,
        "excluded": {"objected": 1},
    }
    assert audience["by_country"]["FR"] == {"considered": 1, "targeted": 1}
    report = _report(herald, "second-notice")
    assert report["targeted"] == 2
    assert report["left_out"] == {"objected": 1, "joined_after_effective_date": 0}
    assert report["left_out_by_country"] == {
        "DE": {"objected": 1, "joined_after_effective_date": 0}
    }
    table = herald("report", "second-notice")
    assert "left out (not targeted) by country" in table.stdout

    # A campaign that must reach everyone (a changed controller) says so.
    _copy_campaign(
        herald,
        "everyone-notice",
        ("exclude_countries: []", "exclude_countries: []\n  include_objected: true"),
    )
    assert herald("plan", "everyone-notice").exit_code == 0
    assert _planned(herald, "everyone-notice") == {"de-1", "de-2", "fr-1"}
    assert _audiences(herald, "everyone-notice")[0]["excluded"] == {}
    assert _report(herald, "everyone-notice")["left_out"]["objected"] == 0
    for campaign in ("second-notice", "everyone-notice"):  # `herald send` signs their logs
        assert herald("send", campaign).exit_code == 0
    _verified(herald)


def test_a_paused_daemon_sends_confirmations_and_a_late_user_is_not_planned(herald, tmp_path):
    """The shipped 2024 campaign: its first pass plans everyone; plan_until (the effective
    date) has passed, so the daemon's replan after an import adds no one."""
    _import(herald, tmp_path, USERS)
    assert herald("plan", CAMPAIGN).exit_code == 0
    assert herald("pause", CAMPAIGN).exit_code == 0
    mailbox = Mailbox()
    for server in serve(mailbox):
        with serve_campaign(herald) as s:
            assert s.http.post(f"/object/{_token(herald, 'de-1')}", data={}).status_code == 200
        status = _status(herald)
        assert (status["state"], status["confirmations_pending"]) == ("paused", 1)

        with DaemonProcess(herald, server.url) as daemon:
            # No notice reached de-1 yet, so the confirmation goes in-app, at once.
            until(lambda: _status(herald)["confirmations_pending"] == 0, 30, daemon.output)
            assert _rows(herald, "SELECT status FROM delivery WHERE message = 'confirmation'") == [
                ("delivered",)
            ]
            # The held notices are due now: they would come within a few ticks.
            _quiet(mailbox, 1.5)
            assert not mailbox.messages
            notices = _rows(herald, "SELECT DISTINCT status FROM delivery WHERE message = 'notice'")
            assert notices == [("pending",)]

            _import(herald, tmp_path, "id,email,country\nno-1,kari@example.com,NO\n", "late.csv")
            assert herald("resume", CAMPAIGN).exit_code == 0

            def replanned() -> bool:
                excluded: dict[str, int] = _audiences(herald, CAMPAIGN)[-1]["excluded"]
                return excluded == {"joined_after_effective_date": 1}

            until(replanned, 30, daemon.output)
            until(lambda: _status(herald)["state"] == "done", 30, daemon.output)
            assert daemon.stop() == 0, daemon.output()

    assert _planned(herald, CAMPAIGN) == {"de-1", "de-2", "fr-1"}
    assert "kari@example.com" not in {m["To"].addresses[0].addr_spec for m in mailbox.messages}
    assert len(mailbox.messages) == 3  # the notices, once resumed
    audience = _audiences(herald, CAMPAIGN)[-1]
    assert audience["by_country"]["NO"] == {
        "considered": 1,
        "targeted": 0,
        "excluded": {"joined_after_effective_date": 1},
    }
    report = _report(herald, CAMPAIGN)
    assert report["targeted"] == report["notified"] == 3
    assert report["left_out"]["joined_after_effective_date"] == 1
    assert report["left_out_by_country"]["NO"]["joined_after_effective_date"] == 1
    _verified(herald)


def _quiet(mailbox: Mailbox, seconds: float) -> None:
    """Wait `seconds` for messages that should not come; return early if one does."""
    count, end = len(mailbox.messages), time.monotonic() + seconds
    while time.monotonic() < end and len(mailbox.messages) == count:
        time.sleep(0.05)
