"""`herald preview --out`: a page per locale and channel, and an index. Writes files.

With the notice come, per locale, the objection page, its confirmation page and the
confirmation message, so reviewers see everything a user may see.
"""

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path

import jinja2
from babel import Locale

from engine.authoring.campaigns import Campaign
from engine.authoring.objectioncheck import confirmation_channels
from engine.authoring.pages import confirmed_page, object_page
from engine.authoring.rendering import Renderer
from engine.models import Channel, LocaleChoice, LocaleSource, RenderedMessage, User

_URL = re.compile(r"(https?://\S+)")
_env = jinja2.Environment(
    loader=jinja2.PackageLoader("engine", "data"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)


@dataclass(frozen=True)
class LocalePreview:
    locale: str
    messages: tuple[RenderedMessage, ...]
    confirmations: tuple[RenderedMessage, ...] = ()
    pages: tuple[tuple[str, str], ...] = ()  # (name, HTML) of the objection service's pages


def write_preview(
    out: Path,
    campaign_id: str,
    user_label: str,
    previews: list[LocalePreview],
    stylesheet: Path | None = None,
) -> Path:
    """Write every page and the index under `out`; returns the index path. `stylesheet`
    is the objection pages' CSS, copied beside them."""
    out.mkdir(parents=True, exist_ok=True)
    if stylesheet is not None:
        (out / "herald.css").write_bytes(stylesheet.read_bytes())
    pages = []
    for preview in previews:
        lang = preview.locale.replace("_", "-")
        locale = Locale.parse(preview.locale)
        direction = "rtl" if locale.character_order == "right-to-left" else "ltr"
        entries = []
        labelled = [(m.channel.value, m) for m in preview.messages]
        labelled += [(f"confirmation {m.channel.value}", m) for m in preview.confirmations]
        for label, m in labelled:
            file = f"{label.replace(' ', '-')}-{preview.locale}.html"
            if m.channel is Channel.EMAIL and m.html is not None:
                content = m.html
            else:
                content = _env.get_template("preview_inapp.html").render(
                    m=m, lang=lang, dir=direction, paragraphs=_paragraphs(m.text)
                )
            (out / file).write_text(content, encoding="utf-8")
            entries.append((label, m.subject, file))
        for name, html in preview.pages:
            file = f"{name.replace(' ', '-')}-{preview.locale}.html"
            html = html.replace('href="/static/herald.css"', 'href="herald.css"')
            (out / file).write_text(html, encoding="utf-8")
            entries.append((name, "", file))
        pages.append(
            {
                "locale": preview.locale,
                "lang": lang,
                "dir": direction,
                "language": locale.get_display_name(locale) or preview.locale,
                "messages": entries,
            }
        )
    index = out / "index.html"
    index.write_text(
        _env.get_template("preview_index.html").render(
            campaign=campaign_id, user=user_label, pages=pages
        ),
        encoding="utf-8",
    )
    return index


def objection_preview(
    c: Campaign, renderer: Renderer, user: User, preview: LocalePreview, url: str
) -> LocalePreview:
    """`preview` with the locale's objection page, confirmation page and confirmation
    message (`renderer` has the objection catalogs), as on the day of the preview."""
    locale, today = preview.locale, dt.date.today()
    choice = LocaleChoice(locale, LocaleSource.USER, False)
    confirmations = tuple(
        renderer.render_confirmation(
            c, user, channel, objection_url=url, locale=choice, objected=today
        )
        for channel in confirmation_channels(c)
    )
    switch = sorted(renderer.catalogs.available)
    pages = tuple(
        (name, renderer.render_page(locale, page.template, page.context))
        for name, page in (
            ("objection page", object_page(c, locale, switch, None)),
            ("confirmed page", confirmed_page(c, locale, switch, today, first=True)),
        )
    )
    return LocalePreview(locale, preview.messages, confirmations, pages)


def _paragraphs(text: str) -> list[list[str]]:
    """Plain text as paragraphs, each split into alternating text and URL parts."""
    return [[part for part in _URL.split(block) if part] for block in text.strip().split("\n\n")]
