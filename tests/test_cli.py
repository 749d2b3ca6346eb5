"""The herald command line, through click's runner, from a project directory."""

import json

import pytest
from typer.testing import CliRunner

from engine.cli import app

runner = CliRunner()


@pytest.fixture
def in_project(project, monkeypatch):
    monkeypatch.chdir(project.root)
    return project


def test_validate_ok_exits_0_with_one_line_per_campaign(in_project):
    result = runner.invoke(app, ["validate", "campaigns/ai-training-notice.yaml"])
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("OK campaigns/ai-training-notice.yaml: 26 locales")


def test_validate_without_arguments_checks_every_campaign(in_project):
    result = runner.invoke(app, ["validate"])
    assert result.exit_code == 0
    assert result.stdout.count("OK ") == 1


def test_validate_lists_every_problem_and_exits_1(in_project):
    in_project.edit("campaigns/ai-training-notice.yaml", "schedule:\n", "shedule:\n")
    in_project.edit("campaigns/ai-training-notice.yaml", "title: Privacy", "titel: Privacy")
    result = runner.invoke(app, ["validate", "ai-training-notice"])
    assert result.exit_code == 1
    assert "ai-training-notice.yaml:4:1: titel: unknown key 'titel'" in result.stderr
    assert "shedule: unknown key 'shedule' (did you mean 'schedule'?)" in result.stderr
    assert "FAILED" in result.stderr


def test_validate_missing_file_exits_1(in_project):
    result = runner.invoke(app, ["validate", "campaigns/nope.yaml"])
    assert result.exit_code == 1
    assert "nope.yaml" in result.stderr
    assert "cannot read" in result.stderr


def test_unknown_option_is_a_usage_error_exit_2(in_project):
    result = runner.invoke(app, ["validate", "--no-such-flag"])
    assert result.exit_code == 2


def test_preview_prints_subject_text_and_inapp_for_one_locale(in_project):
    result = runner.invoke(app, ["preview", "ai-training-notice", "--locale", "pl"])
    assert result.exit_code == 0, result.stderr
    assert "26 czerwca 2024" in result.stdout
    assert "email · pl (user)" in result.stdout
    assert "inapp · pl (user)" in result.stdout


def test_preview_country_picks_its_language(in_project):
    result = runner.invoke(
        app, ["preview", "ai-training-notice", "--country", "FR", "--channel", "inapp"]
    )
    assert result.exit_code == 0
    assert "26 juin 2024" in result.stdout
    assert "inapp · fr (country)" in result.stdout
    assert "email ·" not in result.stdout


def test_preview_unknown_locale_exits_1(in_project):
    result = runner.invoke(app, ["preview", "ai-training-notice", "--locale", "xx"])
    assert result.exit_code == 1
    assert "no catalog for locale(s) xx" in result.stderr


def test_preview_out_writes_a_page_per_locale_and_channel_and_an_index(in_project):
    result = runner.invoke(
        app,
        ["preview", "ai-training-notice", "--out", "preview", "--name", "<b>Eve</b>"],
    )
    assert result.exit_code == 0, result.stderr
    out = in_project.root / "preview"
    assert len(list(out.glob("email-*.html"))) == 26
    assert len(list(out.glob("inapp-*.html"))) == 26
    index = (out / "index.html").read_text(encoding="utf-8")
    assert index.count('<section class="locale"') == 26
    assert "we will use your public content to train AI" in index
    assert "<b>Eve</b>" not in index
    assert "&lt;b&gt;Eve&lt;/b&gt;" in index
    german = (out / "email-de.html").read_text(encoding="utf-8")
    assert "26. Juni 2024" in german
    assert "<bdi>&lt;b&gt;Eve&lt;/b&gt;</bdi>" in german
    # and what follows an objection: the pages and the confirmation, in every locale
    for kind in ("objection-page", "confirmed-page", "confirmation-email", "confirmation-inapp"):
        assert len(list(out.glob(f"{kind}-*.html"))) == 26, kind
    page = (out / "objection-page-de.html").read_text(encoding="utf-8")
    assert "Ihr Widerspruchsrecht" in page
    assert 'href="herald.css"' in page
    assert (out / "herald.css").is_file()
    assert "Wir haben Ihren Widerspruch erfasst" in index


def test_schema_prints_json(in_project):
    result = runner.invoke(app, ["schema"])
    assert result.exit_code == 0
    assert json.loads(result.stdout)["title"] == "Herald campaign"


def test_preview_with_a_broken_catalog_exits_1_naming_it(in_project):
    in_project.edit("locales/de/LC_MESSAGES/messages.po", 'msgid "Object now"', 'msgid "Object now')
    result = runner.invoke(app, ["preview", "ai-training-notice", "--locale", "de"])
    assert result.exit_code == 1
    assert "locales/de/LC_MESSAGES/messages.po" in result.stderr
    assert "cannot read catalog" in result.stderr


def test_a_database_that_cannot_be_opened_is_named_without_its_password(
    in_project, monkeypatch, tmp_path
):
    tmp_path.chmod(0o755)
    monkeypatch.setenv("HERALD_DB", f"sqlite:///{tmp_path}")  # a folder, not a file
    result = runner.invoke(app, ["users", "generate", "--count", "3"])
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        f"cannot open the database sqlite:///{tmp_path}: unable to open database file"
    )
    assert tmp_path.stat().st_mode & 0o777 == 0o755  # the folder is not made private
    monkeypatch.setenv("HERALD_DB", "postgresql+psycopg://herald:s3cret@127.0.0.1:1/x")
    result = runner.invoke(app, ["users", "generate", "--count", "3"])
    assert result.exit_code == 1
    assert "cannot open the database postgresql+psycopg://herald:***@127.0.0.1:1/x: " in (
        result.stderr
    )
    assert "s3cret" not in result.stderr


def test_herald_var_naming_a_file_is_one_line_naming_it(in_project):
    """Not a traceback from deep in the key file's creation; validate, which needs no
    state, still validates (and records nothing)."""
    state = in_project.root / "state"
    state.write_text("not a folder")
    env = {"HERALD_VAR": str(state), "HERALD_SECRET": ""}
    generated = runner.invoke(app, ["users", "generate", "--count", "3"], env=env)
    assert generated.exit_code == 1
    assert generated.stderr.strip() == (
        f"{state} is not a folder: HERALD_VAR names the folder of Herald's state"
    )
    assert runner.invoke(app, ["validate", "ai-training-notice"], env=env).exit_code == 0
    assert state.read_text() == "not a folder"
