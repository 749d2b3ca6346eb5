"""`herald plan` takes a passing `herald validate` of the very same files for its own, and
validates again on any difference (authoring/validated.py)."""

import json
import stat

import pytest

REUSED = "validated before, on these very files"
RECORD = "var/validated/ai-training-notice.json"


def test_plan_after_validate_does_not_validate_again(herald):
    assert herald("users", "generate", "--count", "40").exit_code == 0
    validated = herald("validate", "ai-training-notice")
    assert validated.exit_code == 0, validated.stderr
    record = herald.project.root / RECORD
    assert stat.S_IMODE(record.stat().st_mode) == 0o600  # under var/, like every file there

    planned = herald("plan", "ai-training-notice")
    assert planned.exit_code == 0, planned.stderr
    assert REUSED in planned.stderr
    assert "new deliveries planned" in planned.stdout


def test_a_catalog_broken_after_validate_is_refused_by_plan(herald):
    """The reference campaign's unrendered placeholder, slipped in after validation."""
    assert herald("users", "generate", "--count", "40").exit_code == 0
    assert herald("validate", "ai-training-notice").exit_code == 0
    herald.project.edit(
        "locales/de/LC_MESSAGES/messages.po",
        'msgstr "Guten Tag %(name)s,"',
        'msgstr "Guten Tag %(nmae)s,"',
    )

    planned = herald("plan", "ai-training-notice")
    assert planned.exit_code == 1
    assert REUSED not in planned.stderr
    assert "locales/de/LC_MESSAGES/messages.po" in planned.stderr
    assert "nmae" in planned.stderr
    assert "refused: fix the errors above" in planned.stderr
    assert "planned" not in planned.stdout


def test_plan_records_its_own_validation_and_a_rerun_keeps_the_warnings(herald):
    herald.set_campaign("  return_path: bounces@bounces.example.com", "")
    assert herald("users", "generate", "--count", "40").exit_code == 0
    first = herald("plan", "ai-training-notice")
    assert first.exit_code == 0, first.stderr
    assert REUSED not in first.stderr
    assert "no sender.return_path" in first.stderr

    again = herald("plan", "ai-training-notice")  # plan is rerun to add users who joined
    assert again.exit_code == 0, again.stderr
    assert REUSED in again.stderr
    assert "no sender.return_path" in again.stderr  # a warning is not lost by the shortcut


def test_a_record_of_another_herald_or_a_damaged_one_is_not_trusted(herald):
    assert herald("users", "generate", "--count", "40").exit_code == 0
    assert herald("validate", "ai-training-notice").exit_code == 0
    record = herald.project.root / RECORD
    made = json.loads(record.read_text())

    for damaged in (
        json.dumps(made | {"herald": "0" * 64}),  # Herald, Jinja2 or Babel upgraded
        json.dumps(made | {"spec_hash": "0" * 64}),
        json.dumps(made | {"warnings": "none"}),
        record.read_text()[:40],  # cut short
        "",
    ):
        record.write_text(damaged)
        planned = herald("plan", "ai-training-notice")
        assert planned.exit_code == 0, planned.stderr
        assert REUSED not in planned.stderr, damaged
        assert json.loads(record.read_text()) == made  # validated again, recorded anew


def test_a_file_changed_while_validate_ran_is_not_recorded_as_validated(herald):
    """validate takes the files' hash before it renders: an edit during its ~0.6 s of
    rendering (the bad file in place when the record would be written) is not recorded."""
    from engine.authoring import validated
    from engine.authoring.campaigns import load_campaign

    path, var = herald.project.campaign, herald.project.root / "var"
    before = validated.spec_now(path)
    assert before is not None
    herald.project.edit(
        "templates/layouts/_greeting.txt", "{%", "Dear {{ user.name ~ '' }},\n{%"
    )  # what a validation that had begun would not have seen
    validated.remember(var, load_campaign(path), [], before, create=True)
    assert not (herald.project.root / RECORD).exists()
    validated.remember(var, load_campaign(path), [], validated.spec_now(path) or "", create=True)
    assert (herald.project.root / RECORD).exists()  # the same call, with the files unchanged


def test_validate_makes_var_only_where_herald_var_names_it(project, monkeypatch):
    """The record is a shortcut for plan, kept in var/; validating a campaign in a
    checkout (a CI job, a reviewer's clone) leaves nothing behind there."""
    from typer.testing import CliRunner

    from engine.cli import app

    monkeypatch.chdir(project.root)
    monkeypatch.delenv("HERALD_VAR", raising=False)
    result = CliRunner().invoke(app, ["validate", "ai-training-notice"])
    assert result.exit_code == 0, result.stderr
    assert not (project.root / "var").exists()
    state = project.root / "state"  # named by HERALD_VAR: that is where state lives
    result = CliRunner().invoke(app, ["validate"], env={"HERALD_VAR": str(state)})
    assert result.exit_code == 0, result.stderr
    assert (state / "validated" / "ai-training-notice.json").is_file()


def test_plan_launches_nothing_when_the_files_changed_since_they_were_validated(herald):
    from engine.authoring.campaigns import load_campaign
    from engine.delivery.planning import plan_campaign
    from engine.delivery.tokens import Keys
    from engine.errors import CampaignError
    from engine.store import campaigns as campaign_store

    assert herald("users", "generate", "--count", "40").exit_code == 0
    engine = herald.database()
    loaded = load_campaign(herald.project.campaign)
    with pytest.raises(CampaignError, match="changed while it was being validated"):
        plan_campaign(engine, loaded, Keys(b"k" * 32), validated="0" * 64)
    row = campaign_store.get(engine, "ai-training-notice")
    assert row is None or row["planned_at"] is None
    engine.dispose()


def test_a_symbolic_link_in_the_campaigns_folders_is_refused(herald, tmp_path):
    """Jinja and the catalogs read through a link, the spec walk did not follow one: a
    linked language was rendered and sent, but neither bound at launch nor stored."""
    locales = herald.project.root / "locales"
    (locales / "de").rename(tmp_path / "de")
    (locales / "de").symlink_to(tmp_path / "de")
    assert herald("users", "generate", "--count", "40").exit_code == 0

    checked = herald("validate", "ai-training-notice")
    assert checked.exit_code == 1
    assert f"{locales / 'de'}: a symbolic link" in checked.stderr
    planned = herald("plan", "ai-training-notice")
    assert planned.exit_code == 1
    assert "a symbolic link" in planned.stderr


def test_a_template_kept_as_a_mo_file_is_bound_like_any_other(project):
    """Only compiled catalogs under locales/ are left out of the spec."""
    from engine.authoring.campaigns import load_campaign
    from engine.authoring.specs import spec_files

    greeting = project.root / "templates/layouts/_greeting.txt"
    greeting.with_suffix(".mo").write_bytes(greeting.read_bytes())
    (project.root / "locales/de/LC_MESSAGES/messages.mo").write_bytes(b"compiled")
    paths = {f.path for f in spec_files(load_campaign(project.campaign))}
    assert "templates/layouts/_greeting.mo" in paths
    assert "locales/de/LC_MESSAGES/messages.mo" not in paths
