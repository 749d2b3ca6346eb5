"""`herald plan` takes a passing `herald validate` of the very same files for its own, and
validates again on any difference (authoring/validated.py)."""

import json
import stat

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
