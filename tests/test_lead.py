"""The report counts users notified with less lead than policy.min_lead_days."""

import datetime as dt
import json

import pytest

from tests.conftest import ROOT

USERS = str(ROOT / "tests" / "users.csv")


@pytest.mark.parametrize(("min_lead_days", "short"), [(30, True), (10, False)])
def test_report_counts_users_notified_with_less_lead(herald, min_lead_days, short):
    # Notified today, 20 days before the change: short of 30 days' lead, not of 10.
    today = dt.datetime.now(dt.UTC).date()
    herald.set_campaign("effective_date: 2024-06-26", f"effective_date: {today + dt.timedelta(20)}")
    herald.set_campaign("min_lead_days: 30", f"min_lead_days: {min_lead_days}")
    herald.set_campaign(
        "start: 2024-05-08T07:00:00Z", f"start: {today - dt.timedelta(15)}T07:00:00Z"
    )
    herald.set_campaign(
        "deadline: 2024-05-27T00:00:00Z", f"deadline: {today - dt.timedelta(10)}T00:00:00Z"
    )
    assert herald("users", "import", USERS).exit_code == 0
    assert herald("plan", "ai-training-notice").exit_code == 0
    assert herald("send", "ai-training-notice", "--max-wait", "0").exit_code == 0
    result = herald("report", "ai-training-notice", "--format", "json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["notified"] > 0
    assert report["min_lead_days"] == min_lead_days
    assert report["notified_with_less_lead"] == (report["notified"] if short else 0)
    table = herald("report", "ai-training-notice")
    assert f"notified less than {min_lead_days} days ahead" in table.stdout
