"""The preview pages and the confirmation's text lay out as a reader expects."""

import datetime as dt

from engine.authoring.campaigns import load_campaign
from engine.authoring.i18n import Catalogs
from engine.authoring.preview import LocalePreview, write_preview
from engine.authoring.rendering import Renderer
from engine.models import Channel, LocaleChoice, LocaleSource, User
from tests.conftest import ROOT, SHIPPED

URL = "https://privacy.example.com/object/TOKEN123"
USER = User("u-1", "anna@example.com", "Anna Muster", "DE", "en")
EN = LocaleChoice("en", LocaleSource.USER, False)


def test_inapp_preview_never_breaks_a_link_mid_word_unless_it_must(tmp_path):
    campaign = load_campaign(ROOT / "campaigns" / f"{SHIPPED}.yaml").campaign
    renderer = Renderer(ROOT / "templates", Catalogs(ROOT / "locales"))
    inapp = renderer.render(campaign, USER, Channel.INAPP, objection_url=URL, locale=EN)
    write_preview(tmp_path, campaign.id, "Anna Muster", [LocalePreview("en", (inapp,))])
    page = (tmp_path / "inapp-en.html").read_text(encoding="utf-8")
    # break-all split "https://…" after "ht" wherever the line ended ("ht / tps://…")
    assert "break-all" not in page
    assert "overflow-wrap: anywhere" in page
    assert f'<a href="{campaign.policy.url}">' in page
    email = renderer.render(campaign, USER, Channel.EMAIL, objection_url=URL, locale=EN)
    assert "break-all" not in (email.html or "")


def test_confirmation_text_has_a_blank_line_after_its_title():
    campaign = load_campaign(ROOT / "campaigns" / f"{SHIPPED}.yaml").campaign
    renderer = Renderer(ROOT / "templates", Catalogs.objection(ROOT / "locales"))
    message = renderer.render_confirmation(
        campaign, USER, Channel.EMAIL, objection_url=URL, locale=EN, objected=dt.date(2024, 6, 1)
    )
    assert message.text.startswith("We have recorded your objection\n\nDear Anna Muster,\n")
