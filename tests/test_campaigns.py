import json

import jsonschema
import pytest
import yaml

from engine.authoring.campaigns import campaign_json_schema, load_campaign
from engine.errors import CampaignError, Problem
from engine.models import Channel

YAML = "campaigns/ai-training-notice.yaml"


def _errors(project) -> list[Problem]:
    with pytest.raises(CampaignError) as info:
        load_campaign(project.campaign)
    return info.value.problems


def test_shipped_campaign_loads_with_its_audience(project):
    loaded = load_campaign(project.campaign)
    c = loaded.campaign
    assert c.channels == (Channel.EMAIL, Channel.INAPP)
    assert {"DE", "GR", "NO", "IS", "LI", "GB", "RE", "AX"} <= c.countries
    assert "CH" not in c.countries
    assert "US" not in c.countries
    assert loaded.warnings == ()


def test_typo_key_is_an_error_with_line_column_and_suggestion(project):
    project.edit(YAML, "schedule:\n", "shedule:\n")
    [problem, *_] = [p for p in _errors(project) if p.key == "shedule"]
    assert problem.line == project.line_of(YAML, "shedule:")
    assert problem.column == 1
    assert "unknown key 'shedule'" in problem.message
    assert "did you mean 'schedule'" in problem.message
    assert str(project.campaign) in str(problem)


def test_nested_typo_and_wrong_type_are_reported_together(project):
    project.edit(YAML, "  rate_per_second: 200", "  rate_per_second: fast")
    project.edit(YAML, "  require_complete: true", "  require_complet: true")
    problems = _errors(project)
    keys = {p.key for p in problems}
    assert {"schedule.rate_per_second", "locales.require_complet"} <= keys
    rate = next(p for p in problems if p.key == "schedule.rate_per_second")
    assert rate.line == project.line_of(YAML, "rate_per_second")
    assert "'fast'" in rate.message


@pytest.mark.parametrize("outside", ["../glossary.yaml", "/etc/hostname"])
def test_a_glossary_outside_locales_is_refused(project, outside):
    """The campaign is bound to the files under locales/; a glossary elsewhere would be
    checked at validation and then free to change unseen."""
    (project.root / "glossary.yaml").write_bytes(
        (project.root / "locales/glossary.yaml").read_bytes()
    )
    project.edit(YAML, "glossary: glossary.yaml", f"glossary: {outside}")
    [problem] = _errors(project)
    assert problem.key == "locales.glossary"
    assert problem.message == f"must be a file under {project.root / 'locales'}/"


def test_a_single_value_where_a_list_belongs_says_list(project):
    """pydantic's own words were "expected a valid tuple": a term of Python, not of YAML."""
    project.edit(YAML, "channels: [email, inapp]", "channels: email")
    [problem] = _errors(project)
    assert problem.key == "channels"
    assert problem.message == "expected a list, e.g. [email] (got 'email')"


def test_deadline_not_before_effective_date_is_an_error(project):
    project.edit(YAML, "deadline: 2024-05-27T00:00:00Z", "deadline: 2024-06-27T00:00:00Z")
    [problem] = _errors(project)
    assert problem.key == "schedule.deadline"
    assert problem.line == project.line_of(YAML, "deadline:")
    assert "before policy.effective_date" in problem.message


def test_start_after_deadline_is_an_error(project):
    project.edit(YAML, "start: 2024-05-08T07:00:00Z", "start: 2024-05-28T07:00:00Z")
    problems = _errors(project)
    assert any("after schedule.start" in p.message for p in problems)


def test_naive_datetime_is_rejected_with_the_expected_form(project):
    project.edit(YAML, "start: 2024-05-08T07:00:00Z", "start: 2024-05-08T07:00:00")
    [problem] = _errors(project)
    assert problem.key == "schedule.start"
    assert "time zone" in problem.message


def test_deadline_leaving_less_than_min_lead_days_is_an_error(project):
    # The campaign once shipped: effective 26 June, deadline 12 June, min_lead_days 30.
    project.edit(YAML, "deadline: 2024-05-27T00:00:00Z", "deadline: 2024-06-12T00:00:00Z")
    [problem] = _errors(project)
    assert problem.key == "schedule.deadline"
    assert problem.line == project.line_of(YAML, "deadline:")
    assert "would get 14 days of lead" in problem.message
    assert "at most 2024-05-27T00:00:00Z" in problem.message


def test_deadline_exactly_min_lead_days_before_is_accepted(project):
    project.edit(YAML, "min_lead_days: 30", "min_lead_days: 14")
    project.edit(YAML, "deadline: 2024-05-27T00:00:00Z", "deadline: 2024-06-12T00:00:00Z")
    assert load_campaign(project.campaign).warnings == ()


@pytest.mark.parametrize("key", ["controller", "contact", "dpo", "legal_basis", "url"])
def test_policy_without_the_notice_required_content_is_refused(project, key):
    text = project.path(YAML).read_text(encoding="utf-8")
    line = next(x for x in text.splitlines() if x.startswith(f"  {key}:"))
    project.edit(YAML, line + "\n", "")
    problems = _errors(project)
    assert any(
        p.key == f"policy.{key}" and f"required key {key!r} is missing" in p.message
        for p in problems
    ), problems


def test_every_problem_is_reported_in_one_run(project):
    project.edit(YAML, "  rate_per_second: 200", "  rate_per_second: fast")  # schema
    project.edit(YAML, "regions: [EU, EEA, UK]", "regions: [EU, Narnia]")  # region
    project.edit(YAML, "deadline: 2024-05-27T00:00:00Z", "deadline: 2024-06-12T00:00:00Z")
    project.edit(YAML, 'object/{token}"', 'object/{id}"')
    keys = {p.key for p in _errors(project)}
    assert {
        "schedule.rate_per_second",
        "audience.regions[1]",
        "schedule.deadline",
        "objection.url",
    } <= keys


@pytest.mark.parametrize(
    ("old", "new", "key", "fragment"),
    [
        pytest.param(
            "fallback: null",
            "fallback: email",
            "fallback",
            "already in channels",
            id="fallback-listed",
        ),
        pytest.param(
            "fallback: null",
            "fallback: sms",
            "fallback",
            "'email' or 'inapp'",
            id="fallback-unknown",
        ),
        pytest.param('object/{token}"', 'object/{id}"', "objection.url", "{token}", id="no-token"),
        pytest.param(
            "regions: [EU, EEA, UK]",
            "regions: [EU, Narnia]",
            "audience.regions[1]",
            "unknown region",
            id="unknown-region",
        ),
        pytest.param(
            "exclude_countries: []",
            "exclude_countries: [XX]",
            "audience.exclude_countries[0]",
            "unknown country",
            id="unknown-country",
        ),
        pytest.param(
            "template: ai-training-notice",
            "template: no-such-template",
            "template",
            "does not exist",
            id="missing-template-folder",
        ),
        pytest.param("id: ai-training-notice", "id: Bad_Id", "id", "pattern", id="bad-id"),
        pytest.param(
            "reply_to: null",
            'reply_to: "privacy@example.com\\nBcc: all@example.com"',
            "sender.reply_to",
            "no line breaks",
            id="header-injection",
        ),
        pytest.param(
            "return_path: bounces@bounces.example.com",
            "return_path: bounces+x@bounces.example.com",
            "sender.return_path",
            "pattern",
            id="return-path-with-plus",  # beside `from`, whose alias once broke the report
        ),
        pytest.param(
            "channels: [email, inapp]",
            "channels: [email, email]",
            "channels",
            "listed once",
            id="duplicate-channel",
        ),
    ],
)
def test_invalid_values_are_errors_naming_the_key(project, old, new, key, fragment):
    project.edit(YAML, old, new)
    problems = _errors(project)
    assert any(p.key == key and fragment in p.message for p in problems), problems


def test_duplicate_key_is_an_error(project):
    project.edit(YAML, "title: Privacy", "title: Duplicate\ntitle: Privacy")
    problems = _errors(project)
    assert any(p.key == "title" and "duplicate key" in p.message for p in problems)


def test_norway_stays_a_country_code_not_false(project):
    project.edit(YAML, "exclude_countries: []", "exclude_countries: [NO]")
    assert "NO" not in load_campaign(project.campaign).campaign.countries


def test_missing_template_file_for_a_listed_channel_is_an_error(project):
    project.path("templates/ai-training-notice/inapp_title.txt").unlink()
    problems = _errors(project)
    assert any(p.key == "template" and "inapp_title.txt is missing" in p.message for p in problems)


def test_broken_yaml_names_the_line(project):
    project.edit(YAML, "channels: [email, inapp]", "channels: [email, inapp")
    [problem] = _errors(project)
    assert "not valid YAML" in problem.message
    assert problem.line is not None


def test_every_shipped_campaign_is_valid_against_the_json_schema(project):
    schema = json.loads(campaign_json_schema())
    checker = jsonschema.Draft202012Validator.FORMAT_CHECKER
    assert "time" in checker.checkers  # format checks really on
    assert "date-time" in checker.checkers
    campaigns = sorted(project.path("campaigns").glob("*.yaml"))
    assert campaigns
    for path in campaigns:
        # As an editor reads the file: YAML values as strings, not Python dates.
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_EditorLoader)
        jsonschema.validate(data, schema, format_checker=checker)
    data["schedule"]["send_window"]["from"] = "9h"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(data, schema, format_checker=checker)


class _EditorLoader(yaml.SafeLoader):
    """Timestamps stay strings, as in JSON."""


_EditorLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def test_schema_is_json_schema_forbidding_unknown_keys():
    schema = json.loads(campaign_json_schema())
    assert schema["additionalProperties"] is False
    assert "schedule" in schema["required"]
    assert "from" in schema["$defs"]["Sender"]["properties"]


def test_spec_hash_changes_with_templates_and_catalogs(project):
    from engine.authoring.specs import spec_hash

    first = spec_hash(load_campaign(project.campaign))
    assert spec_hash(load_campaign(project.campaign)) == first
    project.edit("locales/de/LC_MESSAGES/messages.po", "Jetzt widersprechen", "Widersprechen")
    assert spec_hash(load_campaign(project.campaign)) != first
