"""A started campaign stays readable after Herald's campaign format grows.

The fixture is the shipped campaign file exactly as this project shipped it before commit
285c025 made policy.dpo and policy.legal_basis required and a deadline later than
effective_date - min_lead_days an error. A campaign launched with it ran; its report, its
evidence pack and its receipts must still come out, and say what they read as not stated.
"""

import json
import shutil

from sqlalchemy import text

from tests.conftest import ROOT

USERS = str(ROOT / "tests" / "users.csv")
OLD = (ROOT / "tests" / "data" / "specs" / "ai-training-notice-before-285c025.yaml").read_bytes()
CAMPAIGN_FILE = "campaigns/ai-training-notice.yaml"


def _launched_by_an_earlier_version(herald, content: bytes = OLD) -> None:
    """Plan today, then make the stored campaign file the one an earlier version stored."""
    assert herald("users", "import", USERS).exit_code == 0
    assert herald("plan", "ai-training-notice").exit_code == 0
    with herald.database().begin() as conn:
        changed = conn.execute(
            text("UPDATE spec_file SET content = :c WHERE campaign_id = :id AND path = :p"),
            {"c": content, "id": "ai-training-notice", "p": CAMPAIGN_FILE},
        ).rowcount
    assert changed == 1
    shutil.rmtree(herald.project.root / "var" / "specs", ignore_errors=True)


def test_a_campaign_launched_under_an_earlier_format_is_still_reported(herald):
    _launched_by_an_earlier_version(herald)
    result = herald("report", "ai-training-notice", "--format", "json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["targeted"], report["pending"]) == (5, 5)
    for key in ("policy.dpo", "policy.legal_basis"):
        assert f"{key} is not in the file as launched: read as not stated" in result.stderr
    assert "deadline" in result.stderr  # today's lead-time rule, now a warning
    assert "error" not in result.stderr.lower()


def test_its_evidence_pack_and_receipts_come_out(herald, tmp_path):
    _launched_by_an_earlier_version(herald)
    pack = tmp_path / "pack"
    exported = herald("evidence", "export", "ai-training-notice", "--out", str(pack))
    assert exported.exit_code == 0, exported.output
    assert json.loads((pack / "report.json").read_text())["targeted"] == 5
    assert (pack / "spec" / CAMPAIGN_FILE).read_bytes() == OLD  # as launched, not mended
    receipt = herald("evidence", "receipt", "ai-training-notice", "de-1")
    assert receipt.exit_code == 0, receipt.output


def test_a_stored_file_with_a_wrong_value_is_still_refused(herald):
    """Only what a format change explains is mended: a bad value is not guessed at."""
    _launched_by_an_earlier_version(herald, OLD.replace(b"rate_per_second: 200", b"rate: x"))
    result = herald("report", "ai-training-notice", "--format", "json")
    assert result.exit_code == 1
    assert "rate_per_second" in result.stderr


def test_its_objection_links_still_open_and_record(herald):
    """A user who kept the old email can still object with its link, after the upgrade."""
    from tests.service import serve_campaign

    _launched_by_an_earlier_version(herald)
    with serve_campaign(herald) as served:
        url = f"/object/{served.token('de-1')}"
        page = served.http.get(url)
        assert page.status_code == 200, page.text
        assert "Ihr Widerspruchsrecht" in page.text
        done = served.http.post(url, data={"reason": ""})
        assert done.status_code == 200
        assert "Ihr Widerspruch ist erfasst" in done.text
        assert served.count("objection") == 1
