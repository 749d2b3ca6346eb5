"""`herald validate` for what follows an objection: the pages and the confirmation. Pure
but for reading templates.

Renders every page and the confirmation message in every locale of the campaign and
fails on residue, a missing `lang`, a date not written the locale's way, and anything
on the objection form that could stand between a user and their objection: a required
field, a minimum length, any input but the optional reason.
"""

import datetime as dt
import re
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from engine.authoring.campaigns import PAGES, STYLESHEET, Campaign, LoadedCampaign
from engine.authoring.htmlview import style_risks, view
from engine.authoring.i18n import SOURCE_LOCALE, Catalogs
from engine.authoring.outputscan import (
    HTML_TAGS,
    RESIDUE,
    SAMPLE_TOKEN,
    SAMPLE_USERS,
    TAG,
    Date,
    Locator,
    locator,
    scan_output,
)
from engine.authoring.pages import Page, busy_page, confirmed_page, error_page, object_page
from engine.authoring.rendering import Renderer
from engine.errors import Problem, TemplateError
from engine.models import Channel, LocaleChoice, LocaleSource

_HURDLE = re.compile(r"\s(required|minlength|pattern)\b", re.IGNORECASE)
_INPUT = re.compile(r"<(?:input|select)\b[^>]*>", re.IGNORECASE)
_TEXTAREA = re.compile(r"<textarea\b[^>]*>", re.IGNORECASE)
# a field anywhere on the page that joins a form by its form attribute
_JOINS = re.compile(r"<(?:input|select|textarea|button)\b[^>]*\sform\s*=[^>]*>", re.IGNORECASE)
_HIDDEN = re.compile(r"""type\s*=\s*["']?hidden\b""", re.IGNORECASE)
_CONDITIONAL = re.compile(r"\bif (your|the) objection\b|\bmay continue\b", re.IGNORECASE)
SAMPLE_CONTACT = "dpo@example.com"
PAGE_TAGS = HTML_TAGS | {"button", "form", "input", "label", "main", "nav", "section", "textarea"}


def confirmation_channels(c: Campaign) -> tuple[Channel, ...]:
    """A confirmation goes by email when the notice did, and in-app otherwise."""
    email = Channel.EMAIL in (*c.channels, c.fallback)
    return (Channel.EMAIL, Channel.INAPP) if email else (Channel.INAPP,)


def check_objection(
    loaded: LoadedCampaign, catalogs: Catalogs, skip: Collection[str] = ()
) -> tuple[int, list[Problem]]:
    """Render the confirmation for every sample user and every page, in every locale of
    `catalogs` but those in `skip`; the problems, each once."""
    c, templates = loaded.campaign, loaded.project.templates
    renderer = Renderer(templates, catalogs)
    locate = locator(
        catalogs, templates / c.objection.template, templates / "layouts", templates / PAGES
    )
    objected = Date("the objection date", c.schedule.start.date() + dt.timedelta(days=1))
    seen: dict[str, Problem] = {}
    count = 0

    def note(problem: Problem) -> None:
        seen.setdefault(f"{problem.path}:{problem.line}:{problem.message}", problem)

    locales = sorted(catalogs.available)
    for locale in (locale for locale in locales if locale not in skip):
        choice = LocaleChoice(locale, LocaleSource.USER, False)
        for channel in confirmation_channels(c):
            for user in SAMPLE_USERS:
                try:
                    message = renderer.render_confirmation(
                        c,
                        user,
                        channel,
                        objection_url=c.objection.url.format(token=SAMPLE_TOKEN),
                        locale=choice,
                        objected=objected.value,
                    )
                except TemplateError as exc:
                    note(_template_problem(exc, locale))
                    continue
                count += 1
                for problem in scan_output(c, message, user, None, locate, objected):
                    note(problem)
                if locale == SOURCE_LOCALE:
                    where = Where(templates / c.objection.template, locate, locale)
                    parts = (message.subject, message.text)
                    for problem in _conditional(parts, "confirmation", where, channel.value):
                        note(problem)
        for page in _sample_pages(c, locale, locales, objected.value):
            try:
                html = renderer.render_page(locale, page.template, page.context)
            except TemplateError as exc:
                note(_template_problem(exc, locale))
                continue
            count += 1
            needs_form = page.template.endswith("/object.html") and not page.context["objected"]
            path = templates / page.template
            for problem in scan_page(path, html, locale, needs_form, locate):
                note(problem)
            if locale == SOURCE_LOCALE:
                where = Where(path, locate, locale)
                for problem in _conditional((html,), "page", where, "page"):
                    note(problem)
    for problem in _stylesheet_problems(templates / PAGES / STYLESHEET):
        note(problem)
    return count, list(seen.values())


def _stylesheet_problems(stylesheet: Path) -> Iterator[Problem]:
    """The pages' stylesheet may not hide anything, nor load style from elsewhere."""
    text = stylesheet.read_text(encoding="utf-8") if stylesheet.is_file() else ""
    for token, why in style_risks(text, "objection form", css=True):
        yield Problem(stylesheet, why, text.count("\n", 0, text.find(token)) + 1)


def _sample_pages(c: Campaign, locale: str, locales: list[str], at: dt.date) -> Iterator[Page]:
    yield object_page(c, locale, locales, None)
    yield object_page(c, locale, locales, at)
    yield confirmed_page(c, locale, locales, at, first=True)
    yield confirmed_page(c, locale, locales, at, first=False)
    yield error_page(locale, locales, [SAMPLE_CONTACT])
    yield busy_page(locale, locales)


def scan_page(
    path: Path, html: str, locale: str, needs_form: bool = False, locate: Locator | None = None
) -> Iterator[Problem]:
    """What stands between a reader of the page and their objection. `needs_form`: the
    page must show a form that posts, with a button to send it. `locate` finds where a
    comment that never ends was written (often a file the page includes)."""
    key = f"[{locale}] page"
    where = Where(path, locate, locale)
    seen = view(html) if needs_form or "<!--" in html else None  # parsing costs ~1 ms
    if seen is not None and (unclosed := seen.unclosed_comment()):
        yield where.problem(seen.unclosed_comment_text, unclosed, key)
    if (
        seen is not None
        and needs_form
        and not any(f.method == "post" and f.submits and not f.action for f in seen.forms)
    ):
        yield Problem(
            path,
            "the objection page shows no form that posts with a button to send it: "
            "a user cannot object",
            key=key,
        )
    for shown in seen.forms if seen is not None else ():
        if shown.action:
            yield where.problem(
                shown.action,
                f"the objection form posts to {shown.action!r}: it must post to the "
                "objection page itself (no action), where the objection is recorded",
                key,
            )
    # pages/herald.css, checked on its own (_stylesheet_problems)
    for token, why in style_risks(html, "objection form", (f"/static/{STYLESHEET}",)):
        yield where.problem(token, why, key)
    for field in _JOINS.findall(html):
        yield where.problem(
            field, f"a field joins the objection form from outside it: {field}", key
        )
    residues = {m.group(0) for m in RESIDUE.finditer(html)}
    residues |= {f"<{tag}>" for tag in {t.lower() for t in TAG.findall(html)} - PAGE_TAGS}
    for residue in sorted(residues):
        yield Problem(path, f"placeholder residue {residue!r}", key=key)
    if f'lang="{locale.replace("_", "-")}"' not in html:
        yield Problem(path, f'the page does not declare lang="{locale}"', key=key)
    form = html[html.find("<form") : html.find("</form>")] if "<form" in html else ""
    if hurdle := _HURDLE.search(form):
        tag = form[form.rfind("<", 0, hurdle.start()) : form.find(">", hurdle.end()) + 1]
        yield where.problem(
            tag,
            "the objection form has a required field or a minimum length: "
            f"an objection needs no reason and no answer: {tag}",
            key,
        )
    for field in _INPUT.findall(form) + _TEXTAREA.findall(form)[1:]:  # the first: the reason
        if not _HIDDEN.search(field):
            yield where.problem(
                field, f"the objection form asks for more than an optional reason: {field}", key
            )


@dataclass(frozen=True)
class Where:
    """Where a problem in a rendered page or message was written: the catalog entry or
    template line holding its text (`locate`), else `path` (the template rendered)."""

    path: Path
    locate: Locator | None
    locale: str

    def problem(self, token: str, message: str, key: str) -> Problem:
        path, line = self.locate(token, self.locale) if self.locate else (self.path, None)
        return Problem(path if line else self.path, message, line, key=key)


def _conditional(parts: Iterable[str], what: str, where: Where, key: str) -> Iterator[Problem]:
    """Wording that makes the objection sound uncertain ("if your objection is accepted"),
    in the English text: the phrases are English."""
    for part in parts:
        if match := _CONDITIONAL.search(part):
            yield where.problem(
                match.group(0),
                f"conditional wording {match.group(0)!r} in the {what}: "
                "state plainly what will happen",
                f"[{SOURCE_LOCALE}] {key}",
            )


def _template_problem(exc: TemplateError, locale: str) -> Problem:
    return Problem(Path("templates") / exc.template, exc.reason, exc.line, key=f"[{locale}]")
