"""`validate` guards the objection path: a form that asks for more than nothing, a page or
confirmation missing a language, the wrong legal term, conditional wording."""

import pytest

from engine.authoring.validation import validate

OBJECT_HTML = "templates/pages/object.html"
DE_OBJECTION = "locales/de/LC_MESSAGES/objection.po"
INAPP_BODY = "templates/ai-training-objection/inapp_body.txt"


def _errors(project):
    return validate(project.campaign).errors


def test_a_required_reason_is_refused(project):
    project.edit(OBJECT_HTML, '<textarea id="reason"', '<textarea required id="reason"')
    problems = _errors(project)
    assert problems
    assert all("required field or a minimum length" in p.message for p in problems)
    assert str(problems[0].path).endswith(OBJECT_HTML)


def test_a_minimum_length_is_refused(project):
    project.edit(OBJECT_HTML, '<textarea id="reason"', '<textarea minlength="100" id="reason"')
    assert any("minimum length" in p.message for p in _errors(project))


def test_a_question_on_the_form_is_refused(project):
    project.edit(
        OBJECT_HTML,
        "<button",
        '<label for="email">Email</label><input id="email" type="email" name="email">\n<button',
    )
    [problem] = {p.message for p in _errors(project)}
    assert "asks for more than an optional reason" in problem
    assert 'type="email"' in problem


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ('<button type="submit">', '<button type="submit" disabled>'),
        ('<button type="submit">', '<fieldset disabled><button type="submit">'),
        ('<button type="submit">', '<button type="submit" style="visibility:hidden">'),
        ('<button type="submit">', '<button type="submit" style="opacity:0">'),
    ],
    ids=["disabled", "disabled fieldset", "visibility hidden", "transparent"],
)
def test_a_button_that_cannot_be_seen_or_pressed_is_refused(project, old, new):
    project.edit(OBJECT_HTML, old, new)
    problems = {p.message for p in _errors(project)}
    assert any("shows no form that posts with a button to send it" in p for p in problems)


def test_a_form_that_posts_elsewhere_is_refused(project):
    project.edit(
        OBJECT_HTML, '<form method="post">', '<form method="post" action="https://x/login">'
    )
    problems = {p.message for p in _errors(project)}
    assert "the objection form posts to 'https://x/login': it must post to the objection page" in (
        "".join(problems)
    )


def test_a_required_field_outside_the_form_that_joins_it_is_refused(project):
    """The browser does not submit until a field joined by its form attribute is filled."""
    project.edit(OBJECT_HTML, '<form method="post">', '<form method="post" id="f">')
    project.edit(
        OBJECT_HTML,
        '<section class="objection"',
        '<p><label>Why? <input name="why" form="f" required></label></p>\n'
        '<section class="objection"',
    )
    problems = [p for p in _errors(project) if "joins the objection form" in p.message]
    assert problems
    assert str(problems[0].path).endswith(OBJECT_HTML)


def _about(problems, token):
    """Where each problem that names `token` was located, as a path relative to the project."""
    return sorted({str(p.path).split("/templates/", 1)[-1] for p in problems if token in p.message})


def test_a_stylesheet_rule_that_hides_is_refused_on_the_pages_and_in_the_notice(project):
    css = project.path("templates/pages/herald.css")
    css.write_text(css.read_text() + "\nform, button { display: none !important; }\n")
    project.edit("templates/layouts/email.html", "</style>", ".gone{visibility:hidden}\n</style>")
    problems = _errors(project)
    [stylesheet] = [p for p in problems if p.path == css]
    assert stylesheet.line == len(css.read_text().splitlines())
    assert stylesheet.message.startswith("a stylesheet rule hides what it selects (display: none)")
    assert "objection form could be among them" in stylesheet.message
    assert _about(problems, "(visibility:hidden)") == ["layouts/email.html"]


def test_style_loaded_from_elsewhere_is_refused_on_the_pages_and_in_the_notice(project):
    """A stylesheet fetched at reading time is not bound to the campaign: changed after
    launch, it could hide the link or the form. The page's own stylesheet is allowed."""
    css = project.path("templates/pages/herald.css")
    css.write_text("@import url(https://cdn.example.com/x.css);\n" + css.read_text())
    project.edit(
        "templates/pages/base.html",
        '<link rel="stylesheet" href="/static/herald.css">',
        '<link rel="stylesheet" href="/static/herald.css">\n'
        '<LINK href="https://cdn.example.com/page.css" REL="StyleSheet">',
    )
    project.edit(
        "templates/layouts/email.html",
        "<style>",
        '<link rel="stylesheet" href="https://cdn.example.com/notice.css">\n<style>',
    )
    problems = _errors(project)
    [imported] = [p for p in problems if p.path == css]
    assert (imported.line, imported.message[:40]) == (1, "style loaded from elsewhere (@import url")
    assert _about(problems, "(https://cdn.example.com/page.css)") == ["pages/base.html"]
    assert _about(problems, "(https://cdn.example.com/notice.css)") == ["layouts/email.html"]
    assert _about(problems, "(/static/herald.css)") == []


def test_every_language_of_the_notice_needs_the_objection_catalog(project):
    project.path("locales/fi/LC_MESSAGES/objection.po").unlink()
    [problem] = _errors(project)
    assert problem.path == project.path("locales/fi/LC_MESSAGES/objection.po")
    assert "every language of the notice" in problem.message


def test_the_page_must_use_the_official_term_for_the_right_to_object(project):
    project.edit(DE_OBJECTION, 'msgstr "Ihr Widerspruchsrecht"', 'msgstr "Ihr Einspruchsrecht"')
    problems = _errors(project)
    assert any(
        p.path == project.path(DE_OBJECTION) and "widerspruchsrecht" in p.message.lower()
        for p in problems
    ), problems


def test_conditional_wording_in_the_confirmation_is_refused(project):
    project.edit(
        INAPP_BODY, "From {{ date }}, we", "If your objection is honoured, from {{ date }} we"
    )
    project.edit(
        "campaigns/ai-training-notice.yaml", "require_complete: true", "require_complete: false"
    )
    problems = _errors(project)
    assert any("conditional wording 'If your objection'" in p.message for p in problems)


def test_a_placeholder_left_in_a_page_is_caught(project):
    project.edit(OBJECT_HTML, "</form>", "<p>Hallo <name>,</p>\n</form>")
    problems = _errors(project)
    assert any("residue '<name>'" in p.message and "page" in (p.key or "") for p in problems)


def test_a_missing_objection_template_folder_names_the_key(project):
    project.edit(
        "campaigns/ai-training-notice.yaml",
        "template: ai-training-objection",
        "template: ai-training-objections",
    )
    [problem] = _errors(project)
    assert problem.key == "objection.template"
    assert "does not exist" in problem.message
    assert problem.line == project.line_of(
        "campaigns/ai-training-notice.yaml", "template: ai-training-objections"
    )


SUMMARY_HTML = "templates/ai-training-objection/summary.html"
CONFIRMED_HTML = "templates/ai-training-objection/confirmed.html"


def test_a_hurdle_written_in_an_included_file_is_named_where_it_is_written(project):
    """A required field added to the campaign's summary (included by the shared page) is
    named in summary.html at its line, not in pages/object.html."""
    summary = project.path(SUMMARY_HTML)
    summary.write_text(
        summary.read_text("utf-8") + '<form method="post"><textarea name="why" required '
        'minlength="20"></textarea></form>\n',
        "utf-8",
    )
    problems = [p for p in _errors(project) if "required field or a minimum length" in p.message]
    assert problems
    assert {p.path for p in problems} == {project.path(SUMMARY_HTML)}
    assert {p.line for p in problems} == {project.line_of(SUMMARY_HTML, 'name="why"')}


def test_conditional_wording_on_the_confirmed_page_is_refused_at_its_line(project):
    confirmed = project.path(CONFIRMED_HTML)
    confirmed.write_text(
        confirmed.read_text("utf-8") + "<p>If your objection is accepted, we will tell you.</p>\n",
        "utf-8",
    )
    project.edit(
        "campaigns/ai-training-notice.yaml", "require_complete: true", "require_complete: false"
    )
    [problem] = [p for p in _errors(project) if "conditional wording" in p.message]
    assert "in the page" in problem.message
    assert problem.path == project.path(CONFIRMED_HTML)
    assert problem.line == project.line_of(CONFIRMED_HTML, "If your objection is accepted")


def test_a_lone_percent_sign_in_a_translation_is_named_in_the_catalog(project):
    project.edit(
        DE_OBJECTION, 'msgstr "Ihr Widerspruchsrecht"', 'msgstr "Ihr 100% Widerspruchsrecht"'
    )
    problems = [p for p in _errors(project) if "lone %" in p.message]
    assert [(p.path, p.line) for p in problems] == [
        (project.path(DE_OBJECTION), project.line_of(DE_OBJECTION, 'msgid "Your right to object"'))
    ]


def test_a_catalog_that_is_not_utf8_is_named_with_its_line(project):
    path = project.path(DE_OBJECTION)
    path.write_bytes(path.read_text("utf-8").encode("latin-1", errors="replace"))
    problems = [p for p in _errors(project) if "is not UTF-8" in p.message]
    assert problems
    assert problems[0].path == path
    lines = path.read_bytes().split(b"\n")
    first = next(n for n, line in enumerate(lines, 1) if not line.isascii())
    assert problems[0].line == first
