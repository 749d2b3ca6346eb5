"""`herald preview --out`: a page per locale and channel, and an index. Writes files."""

import re
from dataclasses import dataclass
from pathlib import Path

import jinja2
from babel import Locale

from engine.models import Channel, RenderedMessage

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


def write_preview(
    out: Path, campaign_id: str, user_label: str, previews: list[LocalePreview]
) -> Path:
    """Write every page and the index under `out`; returns the index path."""
    out.mkdir(parents=True, exist_ok=True)
    pages = []
    for preview in previews:
        lang = preview.locale.replace("_", "-")
        locale = Locale.parse(preview.locale)
        direction = "rtl" if locale.character_order == "right-to-left" else "ltr"
        entries = []
        for m in preview.messages:
            file = f"{m.channel.value}-{preview.locale}.html"
            if m.channel is Channel.EMAIL and m.html is not None:
                content = m.html
            else:
                content = _env.get_template("preview_inapp.html").render(
                    m=m, lang=lang, dir=direction, paragraphs=_paragraphs(m.text)
                )
            (out / file).write_text(content, encoding="utf-8")
            entries.append((m.channel.value, m, file))
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


def _paragraphs(text: str) -> list[list[str]]:
    """Plain text as paragraphs, each split into alternating text and URL parts."""
    return [[part for part in _URL.split(block) if part] for block in text.strip().split("\n\n")]
