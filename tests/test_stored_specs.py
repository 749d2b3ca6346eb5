"""A started campaign stays readable after Herald's campaign format grows.

The fixture is the shipped campaign file exactly as this project shipped it before commit
285c025 made policy.dpo and policy.legal_basis required and a deadline later than
effective_date - min_lead_days an error. A campaign launched with it ran: its report, its
evidence pack, its receipts and its objection links must still work, saying what they
read as not stated; planning or sending it again is refused, as for any file today's
format refuses.
"""

import json
import shutil

from sqlalchemy import text

from tests.conftest import ROOT

USERS = str(ROOT / "tests" / "users.csv")
OLD = (ROOT / "tests" / "data" / "specs" / "ai-training-notice-before-285c025.yaml").read_bytes()
CAMPAIGN = "ai-training-notice"
CAMPAIGN_FILE = f"campaigns/{CAMPAIGN}.yaml"


def _launched_by_an_earlier_version(herald) -> None:
    """Launch the old file as the version before 285c025 did: planned and signed, its
    files stored, their hashes bound in `started`. Today's `plan` refuses the file, so the
    launch goes through the library with the file read as stored (the one thing that
    differs from that version: `started` names the two texts, as not stated)."""
    from engine.authoring.campaigns import load_campaign
    from engine.config import Settings
    from engine.delivery.planning import plan_campaign
    from engine.delivery.tokens import Keys
    from engine.evidence.signing import sign_heads

    assert herald("users", "import", USERS).exit_code == 0
    path = herald.project.path(CAMPAIGN_FILE)
    path.write_bytes(OLD)
    assert herald("plan", CAMPAIGN).exit_code == 1  # today's format refuses it
    settings = Settings.from_env(herald.env)
    engine = herald.database()
    try:
        plan_campaign(engine, load_campaign(path, stored=True), Keys(settings.secret))
        sign_heads(settings, engine)
    finally:
        engine.dispose()


def test_a_campaign_launched_under_an_earlier_format_is_still_reported(herald):
    _launched_by_an_earlier_version(herald)
    result = herald("report", CAMPAIGN, "--format", "json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["campaign"], report["targeted"], report["pending"]) == (CAMPAIGN, 5, 5)
    for key in ("policy.dpo", "policy.legal_basis"):
        assert f"{key} is not in the file as launched: read as not stated" in result.stderr
    assert "policy.min_lead_days promises every recipient 30" in result.stderr
    assert "error" not in result.stderr.lower()


def test_its_evidence_pack_verifies_and_its_receipts_come_out(herald, tmp_path):
    _launched_by_an_earlier_version(herald)
    pack = tmp_path / "pack"
    exported = herald("evidence", "export", CAMPAIGN, "--out", str(pack))
    assert exported.exit_code == 0, exported.output
    assert "policy.dpo is not in the file as launched" in exported.stderr
    assert json.loads((pack / "report.json").read_text())["targeted"] == 5
    assert (pack / "spec" / CAMPAIGN_FILE).read_bytes() == OLD  # as launched, not mended
    verified = herald("evidence", "verify", str(pack))
    assert verified.exit_code == 0, verified.output
    receipt = herald("evidence", "receipt", CAMPAIGN, "de-1")
    assert receipt.exit_code == 0, receipt.output


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


def test_it_is_not_sent_under_todays_format(herald):
    """Only reading is tolerant: sending reads the stored file as today's format requires,
    from the folder or, without the file, from the database."""
    _launched_by_an_earlier_version(herald)
    sent = herald("send", CAMPAIGN)
    assert sent.exit_code == 1
    assert "policy.dpo" in sent.stderr
    herald.project.path(CAMPAIGN_FILE).unlink()
    sent = herald("send", CAMPAIGN)
    assert sent.exit_code == 1
    assert "policy.dpo" in sent.stderr


def _stored_file_becomes(herald, content: bytes) -> None:
    """Replace the stored campaign file (as someone who can write the database could)."""
    with herald.database().begin() as conn:
        changed = conn.execute(
            text("UPDATE spec_file SET content = :c WHERE campaign_id = :id AND path = :p"),
            {"c": content, "id": CAMPAIGN, "p": CAMPAIGN_FILE},
        ).rowcount
    assert changed == 1
    shutil.rmtree(herald.project.root / "var" / "specs", ignore_errors=True)


def test_nothing_else_in_a_stored_file_is_mended(herald):
    """Only what the format's growth explains is read leniently: a missing sender, an id
    that is not the campaign's, a key this version does not know are refused."""
    _launched_by_an_earlier_version(herald)
    for old, new, named in [
        (b'  from: "Privacy Team <privacy@example.com>"\n', b"", "sender.from"),
        (b"id: ai-training-notice", b"id: another-campaign", "must match the file name"),
        (b"rate_per_second: 200", b"rate_per_second: 200\n  burst: 5", "unknown key 'burst'"),
        (b"rate_per_second: 200", b"rate_per_second: fast", "rate_per_second"),
    ]:
        assert old in OLD
        _stored_file_becomes(herald, OLD.replace(old, new))
        result = herald("report", CAMPAIGN, "--format", "json")
        assert result.exit_code == 1, (new, result.output)
        assert named in result.stderr
