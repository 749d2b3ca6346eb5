"""The objection service's pages: which template, with which variables. Pure.

`herald serve` renders these for real requests and `herald validate` for sample ones,
so what is checked before launch is what users get.
"""

import datetime as dt
import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from babel import Locale

from engine.authoring.campaigns import PAGES, Campaign


@dataclass(frozen=True)
class Page:
    template: str  # e.g. pages/object.html
    context: dict[str, Any]
    status: int = 200


def languages(locales: Iterable[str]) -> list[tuple[str, str]]:
    """(code, the language's own name) for a language switcher, by code."""
    return [(code, _own_name(code)) for code in sorted(locales)]


@functools.cache
def _own_name(code: str) -> str:
    """Cached: every page lists every language (26 Locale lookups, ~0.1 ms a page;
    `herald validate` renders 156 pages)."""
    name = Locale.parse(code).get_display_name(code) or code
    return name[:1].upper() + name[1:]


def _base(locale: str, switch: Sequence[str]) -> dict[str, Any]:
    return {"locale": locale, "languages": languages(switch)}


def _campaign(c: Campaign) -> dict[str, Any]:
    return {
        "campaign": {"id": c.id, "title": c.title},
        "policy": c.policy.model_dump(exclude_none=True),
        "objection_template": c.objection.template,
    }


def object_page(c: Campaign, locale: str, switch: Sequence[str], objected: dt.date | None) -> Page:
    """The summary and the button; or, when the user already objected to this purpose
    (through this campaign or an earlier one), that it is on record and since when."""
    context = {**_base(locale, switch), **_campaign(c)}
    context["objected"] = {"at": objected} if objected else None
    return Page(f"{PAGES}/object.html", context)


def confirmed_page(
    c: Campaign, locale: str, switch: Sequence[str], objected: dt.date, first: bool
) -> Page:
    context = {**_base(locale, switch), **_campaign(c)}
    context.update(objection={"at": objected}, first=first)
    return Page(f"{PAGES}/confirmed.html", context)


def error_page(locale: str, switch: Sequence[str], contacts: Sequence[str]) -> Page:
    """For any token that is not genuine, known and current: one page for all, so it
    reveals nothing about which it was."""
    return Page(f"{PAGES}/error.html", {**_base(locale, switch), "contacts": list(contacts)}, 404)


def busy_page(locale: str, switch: Sequence[str]) -> Page:
    return Page(f"{PAGES}/busy.html", _base(locale, switch), 429)
