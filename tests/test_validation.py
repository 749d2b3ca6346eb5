"""`validate` catches each broken input of the reference campaign, naming file and line."""

import pytest

from engine.authoring.validation import validate
from tests.conftest import ROOT, SHIPPED

DE_PO = "locales/de/LC_MESSAGES/messages.po"
EMAIL_TXT = "templates/ai-training-notice/email.txt"


def _errors(project):
    report = validate(project.campaign)
    return report.errors


def test_shipped_campaign_validates_in_every_locale():
    report = validate(ROOT / "campaigns" / f"{SHIPPED}.yaml")
    assert report.errors == []
    assert [w for w in report.warnings if "the subject is" in w.message] == []  # all <= 78
    assert len(report.locales) == 26
    notices = confirmations = 26 * 2 * 4  # locales x channels x sample users
    pages = 26 * 6  # locales x (objection page, on record, confirmed, again, error, busy)
    assert report.renders == notices + confirmations + pages


def test_missing_template_file_is_caught(project):
    project.path("templates/ai-training-notice/email.html").unlink()
    [problem] = _errors(project)
    assert "email.html is missing" in problem.message
    assert problem.line == project.line_of("campaigns/ai-training-notice.yaml", "template:")


def test_a_template_may_name_only_files_of_the_campaigns_spec(project):
    """A shared snippet kept beside the campaign's folders renders in validate like any
    other, but is neither bound at launch nor stored with the campaign: edited later, it
    would change what the rest of the audience is sent, unseen by the evidence."""
    snippet = project.path("templates/shared/footer.txt")
    snippet.parent.mkdir()
    snippet.write_text("Example Social, 1 Privacy Street\n", encoding="utf-8")
    heading = "{% trans %}What is changing{% endtrans %}"
    project.edit(EMAIL_TXT, heading, '{% include "shared/footer.txt" %}\n' + heading)
    [problem] = _errors(project)
    assert problem.path == project.path(EMAIL_TXT)
    assert problem.line == project.line_of(EMAIL_TXT, "shared/footer.txt")
    assert problem.message.startswith(
        "'shared/footer.txt' is outside the folders this template may use "
        "(ai-training-notice/, layouts/)"
    )


def test_a_notice_may_not_use_a_partial_of_the_objection_side(project):
    """A notice renders with messages.po only: a sentence from the objection's folder,
    translated in objection.po, went out in English in every language."""
    partial = project.path("templates/ai-training-objection/_note.txt")
    partial.write_text("{% trans %}You do not need to do anything else.{% endtrans %}\n")
    heading = "{% trans %}What is changing{% endtrans %}"
    project.edit(EMAIL_TXT, heading, '{% include "ai-training-objection/_note.txt" %}\n' + heading)
    problems = [p for p in _errors(project) if "outside the folders" in p.message]
    assert [(p.path, p.line) for p in problems] == [
        (project.path(EMAIL_TXT), project.line_of(EMAIL_TXT, "_note.txt"))
    ]


@pytest.mark.parametrize(
    "reference",
    ['{% include user.locale ~ "/footer.txt" %}', "{% from campaign.id import footer %}"],
)
def test_a_template_name_computed_from_data_is_refused(project, reference):
    heading = "{% trans %}What is changing{% endtrans %}"
    project.edit(EMAIL_TXT, heading, f"{reference}\n{heading}")
    problems = [p for p in _errors(project) if "computed at render time" in p.message]
    assert [p.line for p in problems] == [project.line_of(EMAIL_TXT, reference)]


def test_template_syntax_error_names_file_and_line(project):
    project.edit(
        EMAIL_TXT,
        "{% trans %}What is changing{% endtrans %}",
        "{% trans %}What is changing{% endtrans %",
    )
    problems = _errors(project)
    assert any(p.path.name == "email.txt" or "email.txt" in str(p.path) for p in problems)
    problem = next(p for p in problems if "email.txt" in str(p.path))
    assert problem.line == project.line_of(EMAIL_TXT, "What is changing")


def test_undefined_variable_is_caught_once_with_its_line(project):
    project.edit(EMAIL_TXT, "{{ objection_url }}", "{{ user.nickname }}")
    problems = _errors(project)
    undefined = [p for p in problems if "nickname" in p.message]
    assert len(undefined) == 1  # not once per locale and sample user
    assert undefined[0].line == project.line_of(EMAIL_TXT, "user.nickname")
    assert "email.txt" in str(undefined[0].path)


def test_missing_translation_is_caught(project):
    project.edit(DE_PO, 'msgid "Object now"\nmsgstr "Jetzt widersprechen"\n', "")
    [problem] = _errors(project)
    assert problem.path == project.path(DE_PO)
    assert "missing translation" in problem.message
    assert "Object now" in problem.key


def test_fuzzy_translation_is_caught_with_its_line(project):
    project.edit(DE_PO, 'msgid "Object now"', '#, fuzzy\nmsgid "Object now"')
    [problem] = _errors(project)
    assert "fuzzy" in problem.message
    assert problem.line == project.line_of(DE_PO, "#, fuzzy") + 1


def test_a_sentence_left_in_english_is_untranslated(project):
    """The reference campaign's kind of slip: a German catalog with one sentence in
    English. A label of a word or two may be the same in both languages."""
    project.edit(DE_PO, 'msgstr "Was sich ändert"', 'msgstr "What is changing"')
    project.edit(DE_PO, 'msgstr "Jetzt widersprechen"', 'msgstr "Object now"')
    [problem] = _errors(project)
    assert problem.message == "untranslated: msgstr is the English source, word for word"
    assert problem.line == project.line_of(DE_PO, 'msgid "What is changing"')


def test_a_message_defined_twice_is_an_error_naming_both_lines(project):
    """A reviewer's correction appended as a second entry: Babel would use the first
    (the wrong wording) and drop the correction without a word."""
    text = (project.root / DE_PO).read_text(encoding="utf-8")
    project.edit(DE_PO, text, text + '\nmsgid "Object now"\nmsgstr "Widerspruch einlegen"\n')
    [problem] = _errors(project)
    first = project.line_of(DE_PO, 'msgid "Object now"')
    assert problem.message.startswith(f"the message is defined twice, first at line {first}:")
    assert problem.line == len(text.splitlines()) + 2
    assert problem.key == "msgid 'Object now'"


@pytest.mark.parametrize("declared", ["ISO-8859-1", "UTF-16"])
def test_a_catalog_that_declares_another_charset_is_an_error(project, declared):
    """Babel decodes a catalog by its header: Polish, written in UTF-8 and declared
    ISO-8859-1, came out as "Zmieniamy sposÃ³b" in every Polish notice (and declared
    UTF-16, it was said not to be UTF-8)."""
    po = "locales/pl/LC_MESSAGES/messages.po"
    project.edit(po, "charset=utf-8", f"charset={declared}")
    [problem] = _errors(project)
    assert problem.path == project.path(po)
    assert problem.line == project.line_of(po, f"charset={declared}")
    assert problem.message.lower().startswith(f"the header declares charset={declared.lower()}")
    assert "catalogs are UTF-8" in problem.message


@pytest.mark.parametrize(
    ("msgstr", "expected"),
    [
        ('" "', "untranslated: msgstr is empty (or only spaces)"),
        ('"Object using your personal link: "', "untranslated: msgstr is the English source"),
    ],
)
def test_a_translation_of_spaces_or_english_with_a_space_is_untranslated(project, msgstr, expected):
    project.edit(
        DE_PO, 'msgstr "Widersprechen Sie über Ihren persönlichen Link:"', f"msgstr {msgstr}"
    )
    [problem] = _errors(project)
    assert problem.message.startswith(expected)
    assert problem.line == project.line_of(DE_PO, 'msgid "Object using your personal link:"')


def test_untranslated_message_is_caught(project):
    project.edit(DE_PO, 'msgstr "Jetzt widersprechen"', 'msgstr ""')
    [problem] = _errors(project)
    assert "untranslated" in problem.message
    assert problem.line == project.line_of(DE_PO, 'msgid "Object now"')


def test_incomplete_catalog_is_a_warning_when_not_required(project):
    project.edit(
        "campaigns/ai-training-notice.yaml",
        "require_complete: true",
        "require_complete: false",
    )
    project.edit(DE_PO, 'msgstr "Jetzt widersprechen"', 'msgstr ""')
    report = validate(project.campaign)
    assert report.errors == []
    assert any("untranslated" in w.message for w in report.warnings)


def test_dropped_glossary_term_is_caught(project):
    po = project.path(DE_PO).read_text(encoding="utf-8")
    project.path(DE_PO).write_text(
        po.replace("Widerspruchsrecht", "Einspruchsmöglichkeit"), encoding="utf-8"
    )
    problems = _errors(project)
    assert problems
    assert all("required term for 'right to object'" in p.message for p in problems)
    assert problems[0].path == project.path(DE_PO)
    assert problems[0].line


def test_renamed_brace_placeholder_is_caught(project):
    # Babel's own checker misses this: {name} -> {nom} under python-brace-format.
    project.edit(DE_PO, 'msgstr "Jetzt widersprechen"', 'msgstr "Jetzt widersprechen {nom}"')
    [problem] = _errors(project)
    assert "placeholders" in problem.message
    assert "{nom}" in problem.message


def test_renamed_percent_placeholder_is_caught(project):
    project.edit(DE_PO, '"%(contact)s"', '"%(kontakt)s"')
    problems = _errors(project)
    assert any("placeholders" in p.message and "%(kontakt)s" in p.message for p in problems)


def test_angle_placeholder_residue_in_output_is_caught(project):
    # The reference failure: a greeting that shipped as "hey <name>".
    project.edit(DE_PO, 'msgstr "Guten Tag %(name)s,"', 'msgstr "Hallo <name>, %(name)s"')
    problems = _errors(project)
    residue = [p for p in problems if "residue '<name>'" in p.message]
    assert residue, problems
    assert {p.path for p in residue} == {project.path(DE_PO)}
    assert residue[0].line == project.line_of(DE_PO, "Hallo <name>") - 1  # the entry's msgid line


def test_brace_residue_in_template_text_is_caught(project):
    project.edit(EMAIL_TXT, "{{ objection_url }}", "{{ objection_url }} {first_name}")
    residue = [p for p in _errors(project) if "residue '{first_name}'" in p.message]
    assert len(residue) == 1  # once, not once per locale and sample user
    assert residue[0].path == project.path(EMAIL_TXT)
    assert residue[0].line == project.line_of(EMAIL_TXT, "{first_name}")


def test_missing_objection_link_is_caught(project):
    project.edit("templates/ai-training-notice/inapp_body.txt", "{{ objection_url }}", "")
    problems = _errors(project)
    assert any("objection link is missing" in p.message and "inapp" in p.key for p in problems)


def test_date_not_formatted_for_the_locale_is_caught(project):
    project.edit(
        EMAIL_TXT,
        'date=policy.effective_date|date("long")',
        "date=policy.effective_date",
        count=1,
    )
    problems = _errors(project)
    assert any("written as '2024-06-26', not as '26. Juni 2024'" in p.message for p in problems)


def test_unescaped_name_in_html_is_caught(project):
    project.edit(
        "templates/layouts/_greeting.html",
        "user.name|bidi",
        "user.name|bidi|safe",
    )
    project.edit(
        "templates/layouts/_greeting.html",
        "{% trans name=",
        "{% autoescape false %}{% trans name=",
    )
    project.edit(
        "templates/layouts/_greeting.html",
        "{% endtrans %}{% else %}",
        "{% endtrans %}{% endautoescape %}{% else %}",
    )
    problems = _errors(project)
    assert any("markup from the name of sample user sample-markup" in p.message for p in problems)


def test_deadline_after_effective_date_fails_validate(project):
    project.edit(
        "campaigns/ai-training-notice.yaml",
        "deadline: 2024-05-27T00:00:00Z",
        "deadline: 2024-07-01T00:00:00Z",
    )
    [problem] = _errors(project)
    assert problem.key == "schedule.deadline"
    assert problem.line


def test_template_that_is_not_utf8_is_an_error_not_a_crash(project):
    path = project.path("templates/ai-training-notice/inapp_title.txt")
    path.write_bytes(path.read_bytes() + b"\xff")
    problems = _errors(project)
    assert any(p.path == path and "not UTF-8" in p.message for p in problems)


def test_broken_po_syntax_is_an_error_naming_the_catalog(project):
    project.edit(DE_PO, 'msgid "Object now"', 'msgid "Object now')
    problems = _errors(project)
    assert any(
        p.path == project.path(DE_PO) and "cannot read catalog" in p.message for p in problems
    )


def test_placeholder_in_another_script_in_a_translation_is_caught(project):
    # The reference campaign's first failure, in Persian: "hey <نام>".
    project.edit(DE_PO, 'msgstr "Guten Tag %(name)s,"', 'msgstr "Hallo <نام>, %(name)s"')
    residue = [p for p in _errors(project) if "residue '<نام>'" in p.message]
    assert residue, _errors(project)
    assert residue[0].path == project.path(DE_PO)
    assert residue[0].line == project.line_of(DE_PO, "Hallo <نام>") - 1


def test_brace_placeholder_absent_from_the_msgid_is_caught(project):
    project.edit(DE_PO, 'msgstr "Jetzt widersprechen"', 'msgstr "Jetzt widersprechen { имя }"')
    assert any("residue '{ имя }'" in p.message for p in _errors(project))


def test_placeholder_in_another_script_in_the_output_is_caught(project):
    # Straight in a template, so it reaches the rendered parts, text and HTML.
    project.edit(EMAIL_TXT, "{{ objection_url }}", "{{ objection_url }} hey <نام>")
    project.edit(
        "templates/ai-training-notice/email.html", "<h2>", "<p>hey &lt;نام&gt; <نام></p>\n<h2>"
    )
    residue = [p for p in _errors(project) if "residue" in p.message and "نام" in p.message]
    assert {p.message.rpartition(" ")[2] for p in residue} == {"text", "html"}, residue


def test_text_outside_any_block_of_a_child_template_is_an_error(project):
    email_html = "templates/ai-training-notice/email.html"
    text = project.path(email_html).read_text(encoding="utf-8")
    project.path(email_html).write_text(text + "<p>A paragraph nobody will see.</p>\n")
    [problem] = [p for p in _errors(project) if "outside any block" in p.message]
    assert problem.path == project.path(email_html)
    assert problem.line == project.line_of(email_html, "nobody will see")


def test_long_subject_is_a_warning_naming_its_length(project):
    project.edit(
        "templates/ai-training-notice/email_subject.txt", "{% trans", "{{ 'x' * 80 }}{% trans"
    )
    report = validate(project.campaign)
    assert any("the subject is" in p.message and "78" in p.message for p in report.warnings)


def test_long_translated_subject_is_a_warning_naming_the_catalog_entry(project):
    project.edit(DE_PO, "nutzen wir Ihre öffentlichen Inhalte für KI-Training", "x" * 80)
    [warning] = [p for p in validate(project.campaign).warnings if "subject is" in p.message]
    assert warning.path == project.path(DE_PO)
    assert warning.line == project.line_of(DE_PO, "x" * 80) - 1


def test_glossary_holds_the_right_to_restriction_and_the_dpo(project):
    project.edit(DE_PO, "Recht auf Einschränkung der Verarbeitung", "Recht auf Begrenzung")
    project.edit(DE_PO, "unseren Datenschutzbeauftragten:", "unseren Datenschützer:")
    terms = {p.message.split("'")[1] for p in _errors(project) if "required term" in p.message}
    assert terms == {"restriction of processing", "data protection officer"}


def test_a_broken_glossary_entry_is_reported_once(project):
    # one glossary serves the notice's and the objection's catalogs: read and judged once
    project.edit(
        "locales/glossary.yaml",
        '  de: ["berechtigten interessen", "berechtigte interessen"]',
        "  de: []",
    )
    broken = [p for p in _errors(project) if "list of accepted forms" in p.message]
    assert len(broken) == 1
    assert broken[0].path == project.path("locales/glossary.yaml")
    assert broken[0].line == project.line_of("locales/glossary.yaml", "de: []")


def test_a_locale_missing_from_the_glossary_is_said_once(project):
    # both domains' catalogs are checked against the one glossary: one warning, not two
    project.edit("locales/glossary.yaml", '  mt: ["interessi leġittimi"]\n', "")
    report = validate(project.campaign)
    said = [p for p in report.warnings if "no required term for locale 'mt'" in p.message]
    assert [p.key for p in said] == ["legitimate interests"]


GREETING_TXT = "templates/layouts/_greeting.txt"


@pytest.mark.parametrize(
    ("greeting", "what"),
    [
        ("{% trans name=user.name|bidi %}Dear {{ name }},{% endtrans %}", "|bidi"),
        ("{% trans name=user.name %}Dear {{ name }},{% endtrans %}", "name, in a translated"),
        ("Dear {{ user.name }},", "a printed value"),
        ("Dear {{ user.name|link }},", "|link"),
    ],
)
def test_a_greeting_that_would_read_dear_none_is_caught_with_its_line(project, greeting, what):
    """The reference campaign's unrendered greeting: a name printed without its guard
    reads "Dear None," to a user without a name. The sample user without one catches it."""
    project.path(GREETING_TXT).write_text(greeting + "\n", "utf-8")
    problems = [p for p in _errors(project) if "not set for this user (None)" in p.message]
    assert len(problems) == 1, _errors(project)
    assert what in problems[0].message
    assert str(problems[0].path).endswith(GREETING_TXT)
    assert problems[0].line == 1


SUMMARY_HTML = "templates/ai-training-objection/summary.html"
EMAIL_HTML = "templates/ai-training-notice/email.html"


def test_a_comment_left_open_in_an_included_page_part_is_caught_where_written(project):
    """A stray "<!--" hides the objection form and its button from every reader of the
    page in a browser, while the markup still holds them."""
    summary = project.path(SUMMARY_HTML)
    summary.write_text(summary.read_text("utf-8") + "<!-- TODO: a second paragraph\n", "utf-8")
    problems = _errors(project)
    [unclosed] = [p for p in problems if "comment that never ends" in p.message]
    assert unclosed.path == project.path(SUMMARY_HTML)
    assert unclosed.line == project.line_of(SUMMARY_HTML, "<!-- TODO")
    assert any("shows no form that posts with a button" in p.message for p in problems)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ('<p style="margin:20px 0 8px"><a', '<!-- <p style="margin:20px 0 8px"><a'),
        ('<p style="margin:20px 0 8px"><a', '<p hidden style="margin:20px 0 8px"><a'),
        (
            '<p style="margin:20px 0 8px"><a',
            '<p style="margin:20px 0 8px;visibility:hidden;max-height:0;overflow:hidden"><a',
        ),
        ('<p style="margin:20px 0 8px"><a', '<p style="margin:20px 0 8px;opacity:0"><a'),
        ('<p style="margin:20px 0 8px"><a', '<p style="max-height:0px;overflow:hidden"><a'),
        ('<p style="margin:20px 0 8px"><a', '<p style="margin:20px 0 8px;font-size:0"><a'),
    ],
    ids=["commented out", "hidden", "visibility hidden", "transparent", "clipped", "no size"],
)
def test_an_objection_link_a_reader_cannot_see_is_missing(project, old, new):
    project.edit(EMAIL_HTML, old, new)
    project.edit(EMAIL_HTML, '<p class="small">', '<p class="small" style="display:none">')
    if new.startswith("<!--"):
        project.edit(EMAIL_HTML, "{{ objection_url }}</a></p>", "{{ objection_url }}</a></p> -->")
    problems = _errors(project)
    assert any(
        "objection link is missing from the HTML" in p.message and "email" in p.key
        for p in problems
    ), problems


def test_an_objection_form_without_a_button_to_send_it_is_caught(project):
    project.edit("templates/pages/object.html", '<button type="submit">', '<button type="button">')
    problems = _errors(project)
    assert any("shows no form that posts with a button" in p.message for p in problems)


def test_a_misspelt_field_in_a_branch_no_sample_takes_is_caught_with_its_line(project):
    """No sample user lives in Liechtenstein: rendering alone would pass, then fail at
    send time for every user the branch holds, and stop the campaign there."""
    project.edit(
        EMAIL_TXT,
        "{{ objection_url }}",
        '{{ objection_url }}{% if user.country == "LI" %}{{ user.first_nam }}'
        '{{ policy["dpo_mail"] }}{{ campaign.titel }}{% endif %}',
    )
    problems = {p.message.split(":")[0]: p for p in _errors(project)}
    line = project.line_of(EMAIL_TXT, "first_nam")
    for field in ("user.first_nam", "policy.dpo_mail", "campaign.titel"):
        assert f"{field} does not exist" in problems, problems
        assert problems[f"{field} does not exist"].line == line
        assert str(problems[f"{field} does not exist"].path).endswith(EMAIL_TXT)


def test_a_greeting_by_first_name_validates_and_must_be_isolated_too(project):
    """README lists user.first_name: the scan took the escaped first name of the sample
    with markup for residue. Isolation is asked of it as of the name."""
    for part in ("txt", "html"):
        project.edit(
            f"templates/layouts/_greeting.{part}", "user.name|bidi", "user.first_name|bidi"
        )
    assert _errors(project) == []
    project.edit("templates/layouts/_greeting.html", "user.first_name|bidi", "user.first_name")
    problems = _errors(project)
    assert problems
    assert all("is not isolated for bidirectional text in the html" in p.message for p in problems)


def test_a_broken_catalog_does_not_hide_a_template_problem(project):
    """validate reports every problem in one run: a fuzzy German entry, and an undefined
    variable every language's render meets (German is left out of the renders, which would
    only repeat its catalog's problem)."""
    project.edit(DE_PO, 'msgid "Object now"', '#, fuzzy\nmsgid "Object now"')
    project.edit(EMAIL_TXT, "{{ objection_url }}", "{{ objection_urll }}")
    problems = _errors(project)
    assert any("fuzzy" in p.message for p in problems)
    [undefined] = [p for p in problems if "objection_urll" in p.message]
    assert undefined.line == project.line_of(EMAIL_TXT, "objection_urll")
    assert "[de]" not in undefined.key


def test_a_language_left_with_its_objection_catalog_alone_is_said(project):
    """Deleting it/messages.po drops Italian from the campaign; the leftover objection.po
    says so, instead of validate answering OK with one language fewer."""
    project.path("locales/it/LC_MESSAGES/messages.po").unlink()
    report = validate(project.campaign)
    assert report.errors == []
    assert "it" not in report.locales
    [warning] = [w for w in report.warnings if "without messages.po" in w.message]
    assert warning.path == project.path("locales/it/LC_MESSAGES/objection.po")
