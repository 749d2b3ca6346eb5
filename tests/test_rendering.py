import pytest

from engine.authoring.campaigns import load_campaign
from engine.authoring.i18n import Catalogs
from engine.authoring.rendering import FSI, PDI, Renderer
from engine.errors import TemplateError
from engine.models import Channel, LocaleSource, User
from tests.conftest import ROOT, SHIPPED

URL = "https://privacy.example.com/object/TOKEN123"


@pytest.fixture(scope="module")
def shipped():
    campaign = load_campaign(ROOT / "campaigns" / f"{SHIPPED}.yaml").campaign
    return campaign, Renderer(ROOT / "templates", Catalogs(ROOT / "locales"))


def _user(name="Anna Muster", country="DE", locale=None):
    return User("u-1", "anna@example.com", name, country, locale)


@pytest.mark.parametrize(
    ("locale", "date"),
    [("de", "26. Juni 2024"), ("fr", "26 juin 2024"), ("pl", "26 czerwca 2024")],
)
def test_email_dates_follow_the_locale(shipped, locale, date):
    campaign, renderer = shipped
    message = renderer.render(campaign, _user(locale=locale), Channel.EMAIL, objection_url=URL)
    assert message.locale.locale == locale
    assert date in message.subject
    assert date in message.text
    assert date in message.html


def test_german_user_gets_german_text_with_official_terms(shipped):
    campaign, renderer = shipped
    message = renderer.render(campaign, _user(locale="de_AT"), Channel.EMAIL, objection_url=URL)
    assert message.locale.source is LocaleSource.USER_LANGUAGE
    assert "Widerspruchsrecht" in message.text
    assert "berechtigten Interessen" in message.text
    assert 'lang="de"' in message.html


def test_script_in_name_renders_inert_in_html(shipped):
    campaign, renderer = shipped
    user = _user(name="<script>alert(1)</script>")
    message = renderer.render(campaign, user, Channel.EMAIL, objection_url=URL)
    assert "<script" not in message.html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in message.html


def test_crlf_in_name_never_reaches_subject_or_breaks_lines(shipped):
    campaign, renderer = shipped
    user = _user(name="Eve\r\nBcc: victim@example.com")
    for channel in Channel:
        message = renderer.render(campaign, user, channel, objection_url=URL)
        assert "\r" not in message.subject
        assert "\n" not in message.subject
        assert "\r" not in message.text
    email = renderer.render(campaign, user, Channel.EMAIL, objection_url=URL)
    assert "Guten Tag Eve Bcc: victim@example.com," in email.text


@pytest.mark.parametrize("control", ["\u202e", "\u202b", "\u2067", "\u2069", "\u202c"])
def test_a_bidi_override_in_a_name_cannot_reorder_the_sentence(shipped, control):
    """U+202E (right-to-left override) and its kin in a name would turn the rest of the
    line around in a reader's client ("Trojan Source"): they are taken out of the name."""
    campaign, renderer = shipped
    user = _user(name=f"Eve{control}live", locale="en")
    for channel in Channel:
        message = renderer.render(campaign, user, channel, objection_url=URL)
        for part in (message.subject, message.text, message.html or ""):
            assert control not in part
    email = renderer.render(campaign, user, Channel.EMAIL, objection_url=URL)
    assert "Dear Evelive," in email.text


def test_rtl_name_is_isolated_inside_ltr_text(shipped):
    campaign, renderer = shipped
    name = "مريم الحسيني"
    message = renderer.render(
        campaign, _user(name=name, locale="en"), Channel.EMAIL, objection_url=URL
    )
    assert f"{FSI}{name}{PDI}" in message.text
    assert f"<bdi>{name}</bdi>" in message.html


def test_ltr_name_is_not_wrapped_in_isolates_in_text(shipped):
    # U+2068/U+2069 show as boxes where a client lacks them: only RTL names need them.
    campaign, renderer = shipped
    for channel in (Channel.EMAIL, Channel.INAPP):
        message = renderer.render(campaign, _user(locale="en"), channel, objection_url=URL)
        assert FSI not in message.text
        assert PDI not in message.text
    email = renderer.render(campaign, _user(locale="en"), Channel.EMAIL, objection_url=URL)
    assert "Dear Anna Muster," in email.text
    assert "<bdi>Anna Muster</bdi>" in email.html


@pytest.mark.parametrize(
    ("country", "date"),
    [("GB", "26 June 2024"), ("IE", "26 June 2024"), ("MT", "26 June 2024")],
)
def test_english_readers_in_gb_ie_mt_get_british_dates(shipped, country, date):
    campaign, renderer = shipped
    user = _user(country=country, locale="en")
    message = renderer.render(campaign, user, Channel.EMAIL, objection_url=URL)
    assert date in message.subject
    assert date in message.text
    assert "June 26" not in message.text
    us = renderer.render(
        campaign, _user(country="US", locale="en"), Channel.EMAIL, objection_url=URL
    )
    assert "June 26, 2024" in us.text


def test_italian_elides_the_article_before_8_and_11(project):
    project.edit(
        "campaigns/ai-training-notice.yaml",
        "effective_date: 2024-06-26",
        "effective_date: 2024-08-11",
    )
    project.edit("campaigns/ai-training-notice.yaml", "min_lead_days: 30", "min_lead_days: 0")
    campaign = load_campaign(project.campaign).campaign
    renderer = Renderer(project.path("templates"), Catalogs(project.path("locales")))
    message = renderer.render(campaign, _user(locale="it"), Channel.EMAIL, objection_url=URL)
    assert "dall'11 agosto 2024" in message.text
    assert "dal 11" not in message.text + message.subject + (message.html or "")


def test_rtl_locale_sets_dir(tmp_path, shipped):
    campaign, _ = shipped
    locales = tmp_path / "locales"
    (locales / "ar" / "LC_MESSAGES").mkdir(parents=True)
    (locales / "ar" / "LC_MESSAGES" / "messages.po").write_text(
        'msgid ""\nmsgstr "Content-Type: text/plain; charset=UTF-8\\n"\n',
        encoding="utf-8",
    )
    renderer = Renderer(ROOT / "templates", Catalogs(locales))
    message = renderer.render(campaign, _user(locale="ar"), Channel.EMAIL, objection_url=URL)
    assert message.html is not None
    assert 'dir="rtl"' in message.html


def test_missing_name_uses_a_name_free_greeting(shipped):
    campaign, renderer = shipped
    for name in (None, "", "  \r\n "):
        message = renderer.render(
            campaign, _user(name=name, locale="en"), Channel.EMAIL, objection_url=URL
        )
        assert message.text.startswith("Hello,\n")
        assert "Dear" not in message.text


def test_objection_link_is_in_every_channel(shipped):
    campaign, renderer = shipped
    email = renderer.render(campaign, _user(), Channel.EMAIL, objection_url=URL)
    inapp = renderer.render(campaign, _user(), Channel.INAPP, objection_url=URL)
    assert URL in email.text
    assert f'href="{URL}"' in email.html
    assert URL in inapp.text


def test_undefined_variable_is_an_error_with_template_and_line(project):
    project.edit(
        "templates/ai-training-notice/email.txt",
        "{{ objection_url }}",
        "{{ objection_link }}",
    )
    loaded = load_campaign(project.campaign)
    renderer = Renderer(project.path("templates"), Catalogs(project.path("locales")))
    with pytest.raises(TemplateError) as info:
        renderer.render(loaded.campaign, _user(), Channel.EMAIL, objection_url=URL)
    assert "objection_link" in str(info.value)
    assert info.value.template == "ai-training-notice/email.txt"
    assert info.value.line == project.line_of(
        "templates/ai-training-notice/email.txt", "{{ objection_link }}"
    )


def test_branch_on_a_user_field_is_rendered_per_user_not_reused(project):
    project.edit(
        "templates/ai-training-notice/email.txt",
        "{{ objection_url }}",
        '{{ objection_url }}\n{% if user.country == "AT" %}Servus{% endif %}'
        "{% if user.timezone %} ({{ user.timezone }}){% endif %}",
    )
    campaign = load_campaign(project.campaign).campaign
    renderer = Renderer(project.path("templates"), Catalogs(project.path("locales")))
    texts = {
        (country, zone): renderer.render(
            campaign,
            User("u", "u@example.com", "U", country, "de", zone),
            Channel.EMAIL,
            objection_url=URL,
        ).text
        for country in ("AT", "DE")
        for zone in ("Europe/Vienna", None)
    }
    assert "Servus (Europe/Vienna)" in texts[("AT", "Europe/Vienna")]
    assert "Servus" in texts[("AT", None)]
    assert "(Europe" not in texts[("AT", None)]
    assert "Servus" not in texts[("DE", "Europe/Vienna")]
    assert "(Europe/Vienna)" in texts[("DE", "Europe/Vienna")]


def test_many_users_of_one_locale_render_like_one_by_one(shipped):
    campaign, renderer = shipped
    for i, name in enumerate(["Ana", None, "<i>x</i> & y", "Łukasz Ó'Brien", "مريم"]):
        user = User(f"u{i}", f"u{i}@example.com", name, "PL", "pl")
        fast = renderer.render(campaign, user, Channel.EMAIL, objection_url=f"{URL}{i}")
        full = renderer.render_full(
            campaign, user, Channel.EMAIL, objection_url=f"{URL}{i}", locale=fast.locale
        )
        assert (fast.subject, fast.text, fast.html) == (full.subject, full.text, full.html)
