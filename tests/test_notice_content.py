"""The shipped notice carries a first-layer Art. 13/14 notice in every locale, names the
data one way, and the objection pages say who is asking (issue 15, items 6 and 16)."""

import datetime as dt

import pytest
from markupsafe import escape

from engine.authoring.campaigns import load_campaign
from engine.authoring.i18n import SOURCE_LOCALE, Catalogs, read_po_file
from engine.authoring.pages import confirmed_page, object_page
from engine.authoring.rendering import Renderer
from engine.models import Channel, LocaleChoice, LocaleSource, User
from tests.conftest import ROOT, SHIPPED

URL = "https://privacy.example.com/object/TOKEN123"
USER = User("u-1", "anna@example.com", "Anna Muster", "DE", None)
LOCALES = sorted(Catalogs(ROOT / "locales").available)
FIRST_LAYER_STARTS = (  # besides the purpose, legal basis and rights it already gave
    "%(controller)s is the controller",  # and the controller's and the DPO's contacts
    "The recipients of this data",
    "Some of these processors are in countries outside the European Economic Area",
    "We keep this data for as long as",
    "In addition, you have the right to restriction of processing",
)
FIRST_LAYER = [
    m.id
    for m in read_po_file(ROOT / "locales" / "messages.pot")
    if isinstance(m.id, str) and m.id.startswith(FIRST_LAYER_STARTS)
]


@pytest.fixture(scope="module")
def shipped():
    campaign = load_campaign(ROOT / "campaigns" / f"{SHIPPED}.yaml").campaign
    return (
        campaign,
        Renderer(ROOT / "templates", Catalogs(ROOT / "locales")),
        Renderer(ROOT / "templates", Catalogs.objection(ROOT / "locales")),
    )


def _choice(locale: str) -> LocaleChoice:
    return LocaleChoice(locale, LocaleSource.USER, False)


@pytest.mark.parametrize("locale", LOCALES)
def test_every_locale_carries_the_first_layer_notice(shipped, locale):
    campaign, notices, _ = shipped
    policy = campaign.policy
    catalogs = Catalogs(ROOT / "locales")
    for channel in (Channel.EMAIL, Channel.INAPP):
        message = notices.render(campaign, USER, channel, objection_url=URL, locale=_choice(locale))
        for value in (policy.controller, policy.contact, policy.dpo, policy.url):
            assert value in message.text, (channel, value)
        for msgid in FIRST_LAYER:
            translated = msgid
            if locale != SOURCE_LOCALE:
                translated = _msgstr(catalogs, locale, msgid)
                assert translated, msgid
                assert translated != msgid, msgid
            opening = translated.split("%(")[0][:25] or translated.split(")s")[1][:25]
            assert opening in message.text, (channel, opening)
    email = notices.render(campaign, USER, Channel.EMAIL, objection_url=URL, locale=_choice(locale))
    assert f'<a href="mailto:{policy.dpo}">{policy.dpo}</a>' in (email.html or "")
    assert f'<a href="mailto:{policy.contact}">' in (email.html or "")
    assert f'<a href="{policy.url}">{policy.url}</a>' in (email.html or "")


def test_the_data_concerned_is_named_one_way_everywhere(shipped):
    campaign, notices, objections = shipped
    en = _choice("en")
    parts = []
    for channel in (Channel.EMAIL, Channel.INAPP):
        message = notices.render(campaign, USER, channel, objection_url=URL, locale=en)
        parts += [message.text, *([message.html] if message.html else [])]
        confirmation = objections.render_confirmation(
            campaign, USER, channel, objection_url=URL, locale=en, objected=dt.date(2024, 6, 1)
        )
        parts.append(confirmation.text)
    page = object_page(campaign, "en", ["en"], None)
    parts.append(objections.render_page("en", page.template, page.context))
    for part in parts:
        assert "caption" not in part
        assert "posts, photos and comments" in part


@pytest.mark.parametrize("locale", LOCALES)
def test_objection_pages_name_the_controller_link_the_policy_and_give_the_dpo(shipped, locale):
    campaign, _, objections = shipped
    policy = campaign.policy
    for page in (
        object_page(campaign, locale, LOCALES, None),
        confirmed_page(campaign, locale, LOCALES, dt.date(2024, 6, 1), first=True),
    ):
        html = objections.render_page(locale, page.template, page.context)
        assert str(escape(policy.controller)) in html
        assert f'<a href="{policy.url}">' in html
        assert f'<a href="mailto:{policy.dpo}">' in html
        if locale != SOURCE_LOCALE:
            assert "This page is provided by" not in html


@pytest.mark.parametrize(
    ("locale", "domain", "msgid", "expected"),
    [
        ("sv", "objection", "I object", "Jag gör en invändning"),
        ("el", "objection", "Reason (optional)", "Λόγος (προαιρετικός)"),
        ("et", "messages", "Object now", "Esitage vastuväide"),  # formal, as the rest
    ],
)
def test_translation_review_fixes(locale, domain, msgid, expected):
    catalogs = Catalogs(ROOT / "locales", domain)
    assert _msgstr(catalogs, locale, msgid) == expected


def test_french_puts_a_no_break_space_before_high_punctuation():
    for domain in ("messages", "objection"):
        for message in Catalogs(ROOT / "locales", domain).catalog("fr"):
            if message.id and isinstance(message.string, str):
                for mark in ":?!;":
                    assert f" {mark}" not in message.string, (message.id, message.string)
    dpo = _msgstr(
        Catalogs(ROOT / "locales"),
        "fr",
        "Questions? Contact our data protection officer: %(contact)s",
    )
    assert "données\u00a0: %(contact)s" in dpo


def _msgstr(catalogs: Catalogs, locale: str, msgid: str) -> str:
    entry = catalogs.catalog(locale).get(msgid)
    assert entry is not None, msgid
    assert isinstance(entry.string, str), msgid
    return entry.string


@pytest.mark.parametrize("locale", LOCALES)
def test_subject_fits_78_characters_in_every_month(shipped, locale):
    campaign, notices, _ = shipped
    for month in range(1, 13):
        policy = campaign.policy.model_copy(update={"effective_date": dt.date(2024, month, 28)})
        moved = campaign.model_copy(update={"policy": policy})
        message = notices.render_full(
            moved, USER, Channel.EMAIL, objection_url=URL, locale=_choice(locale)
        )
        assert len(message.subject) <= 78, message.subject
