"""`herald preview --out`: one HTML page per locale and channel, and an index. Writes files."""

import re
from dataclasses import dataclass
from pathlib import Path

import jinja2
from babel import Locale

from engine.models import Channel, RenderedMessage

_URL = re.compile(r"(https?://\S+)")
_env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)

_INAPP_PAGE = _env.from_string("""<!DOCTYPE html>
<html lang="{{ lang }}" dir="{{ dir }}"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ m.subject }}</title>
<style>
 body { margin: 0; padding: 24px; background: #e5e7eb; font-family: Arial, Helvetica, sans-serif; }
 .card { max-width: 420px; margin: auto; background: #fff; border-radius: 12px; padding: 20px;
         box-shadow: 0 4px 16px rgba(0,0,0,.15); color: #1f2937; line-height: 1.5; }
 h1 { font-size: 18px; margin: 0 0 12px; } p { margin: 0 0 10px; white-space: pre-wrap; }
 a { color: #1d4ed8; word-break: break-all; }
</style></head>
<body><div class="card" role="dialog" aria-labelledby="t"><h1 id="t">{{ m.subject }}</h1>
{% for para in paragraphs %}<p>{% for part in para %}{% if part.startswith("http") %}<a href="{{ part }}">{{ part }}</a>{% else %}{{ part }}{% endif %}{% endfor %}</p>
{% endfor %}</div></body></html>
""")

_INDEX = _env.from_string("""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Preview: {{ campaign }}</title>
<style>
 body { margin: 0; padding: 16px; font-family: Arial, Helvetica, sans-serif; background: #f3f4f6; color: #111827; }
 h1 { font-size: 20px; } .grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(420px, 1fr)); gap: 16px; }
 .locale { background: #fff; border-radius: 8px; padding: 12px; box-shadow: 0 1px 3px rgba(0,0,0,.1); }
 .locale h2 { font-size: 16px; margin: 0 0 6px; } .meta { font-size: 13px; color: #4b5563; margin: 2px 0; }
 iframe { width: 100%; height: 520px; border: 1px solid #d1d5db; border-radius: 4px; background: #fff; }
</style></head>
<body><h1>Preview: {{ campaign }} &middot; {{ pages|length }} locales &middot; sample user {{ user }}</h1>
<div class="grid">
{% for p in pages %}<section class="locale" lang="{{ p.lang }}" dir="{{ p.dir }}">
<h2>{{ p.locale }} &middot; {{ p.language }}</h2>
{% for channel, m, file in p.messages %}<p class="meta"><a href="{{ file }}">{{ channel }}</a>: <strong>{{ m.subject }}</strong></p>
{% endfor %}<iframe src="{{ p.messages[0][2] }}" title="{{ p.locale }} {{ p.messages[0][0] }}" loading="lazy"></iframe>
</section>
{% endfor %}</div></body></html>
""")


@dataclass(frozen=True)
class LocalePreview:
    locale: str
    messages: tuple[RenderedMessage, ...]


def write_preview(out: Path, campaign_id: str, user_label: str,
                  previews: list[LocalePreview]) -> Path:
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
                content = _INAPP_PAGE.render(m=m, lang=lang, dir=direction,
                                             paragraphs=_paragraphs(m.text))
            (out / file).write_text(content, encoding="utf-8")
            entries.append((m.channel.value, m, file))
        pages.append({"locale": preview.locale, "lang": lang, "dir": direction,
                      "language": locale.get_display_name(locale) or preview.locale,
                      "messages": entries})
    index = out / "index.html"
    index.write_text(_INDEX.render(campaign=campaign_id, user=user_label, pages=pages),
                     encoding="utf-8")
    return index


def _paragraphs(text: str) -> list[list[str]]:
    """Plain text as paragraphs, each split into alternating text and URL parts."""
    return [[part for part in _URL.split(block) if part] for block in text.strip().split("\n\n")]
