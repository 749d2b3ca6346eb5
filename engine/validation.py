"""`herald validate`: every check that must pass before a campaign may launch.

Loads the campaign, its catalogs and glossary, then renders every (locale x channel)
for sample users and scans the output. Reads files; otherwise pure.
"""

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from markupsafe import escape

from engine.campaigns import Campaign, LoadedCampaign, load_campaign
from engine.catalogcheck import (
    SourceMessage,
    check_catalog,
    check_glossary,
    extract_messages,
    load_glossary,
    msgstrs,
)
from engine.errors import CampaignError, Problem, TemplateError
from engine.i18n import SOURCE_LOCALE, Catalogs, Formatter, read_po_file
from engine.models import LocaleChoice, LocaleSource, RenderedMessage, User
from engine.rendering import FSI, PDI, Renderer, clean_field

SAMPLE_TOKEN = "SAMPLE-TOKEN"
SAMPLE_USERS = (
    User("sample-plain", "maria@example.com", "Maria Example", "DE", None),
    User("sample-no-name", "no-name@example.com", None, "FR", None),
    User("sample-rtl", "rtl@example.com", "مريم الحسيني", "SE", None),
    User(
        "sample-markup",
        "markup@example.com",
        '<script>alert(1)</script>\r\nBcc: victim@example.com "Eve"',
        "NL",
        None,
    ),
)
_HTML_TAGS = frozenset(
    "a abbr b bdi bdo blockquote body br caption center code col colgroup dd div dl dt em "
    "font footer h1 h2 h3 h4 h5 h6 head header hr html i img li link meta ol p pre s small "
    "span strong style sub sup table tbody td tfoot th thead title tr u ul".split()
)
_RESIDUE = re.compile(
    r"\{\{|\}\}|\{%|%\}|\{#|#\}"  # Jinja syntax
    r"|%\(\w+\)[sdif]?|(?<![\w%])%[sd]\b"  # printf placeholders
    r"|\{\w+\}|\$\{\w+\}|\[\[?[A-Z_]{3,}\]?\]|%[A-Za-z_]+%"  # brace, shell, merge-tag styles
    r"|&lt;/?\w+&gt;"  # an escaped <name>
)
_URL = re.compile(r"https?://[^\s\"'<>]+")
_TAG = re.compile(r"<\s*/?\s*([A-Za-z_][\w:-]*)")


@dataclass
class ValidationReport:
    path: Path
    campaign: Campaign | None = None
    locales: tuple[str, ...] = ()
    renders: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity != "error"]


def validate(path: Path) -> ValidationReport:
    """Run every pre-launch check on one campaign file; never raises for bad input."""
    report = ValidationReport(path)
    try:
        loaded = load_campaign(path)
    except CampaignError as exc:
        report.problems += exc.problems
        return report
    report.campaign = loaded.campaign
    report.problems += loaded.warnings
    catalogs = Catalogs(loaded.project.locales)
    report.locales = tuple(sorted(catalogs.available))
    report.problems += list(_check_translations(loaded, catalogs))
    if not report.errors:  # rendering broken catalogs would only repeat their problems
        report.renders, render_problems = _check_renders(loaded, catalogs)
        report.problems += render_problems
    return report


def _check_translations(loaded: LoadedCampaign, catalogs: Catalogs) -> Iterator[Problem]:
    c, project = loaded.campaign, loaded.project
    if c.locales.default not in catalogs.available:
        yield Problem(
            loaded.path,
            f"locales.default {c.locales.default!r} has no catalog in {project.locales}",
            key="locales.default",
        )
    sources, unreadable = extract_messages(
        [project.templates / c.template, project.templates / "layouts"]
    )
    yield from unreadable
    severity = "error" if c.locales.require_complete else "warning"
    for locale in sorted(catalogs.available):
        yield from check_catalog(catalogs, locale, sources, severity=severity)
    yield from _check_pot(project.locales / "messages.pot", sources)
    if c.locales.glossary:
        glossary_path = project.locales / c.locales.glossary
        glossary, problems = load_glossary(glossary_path)
        yield from problems
        for locale in sorted(catalogs.available):
            yield from check_glossary(catalogs, locale, glossary, sources, glossary_path)


def _check_pot(pot: Path, sources: dict[str, SourceMessage]) -> Iterator[Problem]:
    if not pot.exists():
        yield Problem(pot, "no message template: run pybabel extract", severity="warning")
        return
    stale = sorted(set(sources) - {m.id for m in read_po_file(pot) if m.id})
    if stale:
        yield Problem(
            pot,
            f"out of date, {len(stale)} message(s) missing: run pybabel "
            "extract -F babel.cfg -o locales/messages.pot .",
            severity="warning",
        )


def _check_renders(loaded: LoadedCampaign, catalogs: Catalogs) -> tuple[int, list[Problem]]:
    c = loaded.campaign
    renderer = Renderer(loaded.project.templates, catalogs)
    url = c.objection.url.format(token=SAMPLE_TOKEN)
    locate = _locator(catalogs, loaded.project.templates / c.template)
    channels = (*c.channels, *([c.fallback] if c.fallback else []))
    seen: dict[str, Problem] = {}
    count = 0
    for locale in sorted(catalogs.available):
        choice = LocaleChoice(locale, LocaleSource.USER, False)
        for channel in channels:
            for user in SAMPLE_USERS:
                try:
                    message = renderer.render(c, user, channel, objection_url=url, locale=choice)
                except TemplateError as exc:
                    key = f"{exc.template}:{exc.line}:{exc.reason}"
                    seen.setdefault(
                        key,
                        Problem(
                            Path("templates") / exc.template,
                            exc.reason,
                            exc.line,
                            key=f"[{locale}]",
                        ),
                    )
                    continue
                count += 1
                for problem in scan_output(c, message, user, url, locate):
                    # once per source line and channel, not once per locale and sample user
                    where = f"{problem.path}:{problem.line}:{channel}:{problem.message}"
                    seen.setdefault(where, problem)
    return count, list(seen.values())


Locator = Callable[[str, str], tuple[Path, int | None]]


def scan_output(
    c: Campaign, message: RenderedMessage, user: User, url: str, locate: Locator | None = None
) -> list[Problem]:
    """What a reader must never see: residue, a missing link or date, injected markup.

    `locate(token, locale)` finds the file and line a residue token came from.
    """
    locale = message.locale.locale
    key = f"[{locale}] {message.channel.value}"
    out: list[Problem] = []

    def problem(text: str, token: str | None = None) -> None:
        path, line = (locate or _nowhere(c))(token or "", locale)
        out.append(Problem(path, text, line, key=key))

    name = clean_field(user.name) or ""
    parts = {"subject": message.subject, "text": message.text}
    if message.html is not None:
        parts["html"] = message.html
    for part, content in parts.items():
        scrubbed = _without_name(content, name)
        residues = {m.group(0) for m in _RESIDUE.finditer(scrubbed)}
        tags = {t.lower() for t in _TAG.findall(scrubbed)}
        residues |= {f"<{tag}>" for tag in (tags - _HTML_TAGS if part == "html" else tags)}
        for residue in sorted(residues):
            token = residue.replace("&lt;", "<").replace("&gt;", ">")
            problem(f"placeholder residue {residue!r} in the {part}", token)
        if name and name in content.replace(FSI, "").replace(PDI, ""):
            isolated = f"<bdi>{escape(name)}</bdi>" if part == "html" else f"{FSI}{name}{PDI}"
            if content.count(isolated) != content.count(escape(name) if part == "html" else name):
                problem(
                    f"the name of sample user {user.id} is not isolated for bidirectional "
                    f"text in the {part}"
                )
    if "<script" in (message.html or "").lower():
        problem(f"markup from the name of sample user {user.id} reached the HTML unescaped")
    if "\n" in message.subject or "\r" in message.subject:
        problem("the subject spans several lines")
    if url not in message.text:
        problem("the objection link is missing from the text")
    if message.html is not None and f'href="{escape(url)}"' not in message.html:
        problem("the objection link is missing from the HTML (no <a href> to it)")
    date = Formatter(locale).date(c.policy.effective_date, "long")
    english = Formatter(SOURCE_LOCALE).date(c.policy.effective_date, "long")
    iso = c.policy.effective_date.isoformat()
    for part, content in parts.items():
        if part != "subject" and date not in content:
            problem(f"the effective date is not written as {date!r} in the {part}")
        if english != date and english in content:
            problem(f"the effective date is written in English ({english!r}) in the {part}")
        if iso != date and iso in _URL.sub("", content):
            problem(f"the effective date is written as {iso!r}, not as {date!r}, in the {part}")
    return out


def _nowhere(c: Campaign) -> Locator:
    return lambda token, locale: (Path("templates") / c.template, None)


def _locator(catalogs: Catalogs, template_dir: Path) -> Locator:
    """Where a residue token comes from: the locale's catalog first, then the templates."""
    templates = sorted(p for p in template_dir.rglob("*") if p.is_file())

    def locate(token: str, locale: str) -> tuple[Path, int | None]:
        if token and catalogs.po_path(locale).exists():
            for entry in catalogs.catalog(locale):
                if entry.id and any(token in text for text in msgstrs(entry)):
                    return catalogs.po_path(locale), entry.lineno
        for path in templates if token else ():
            for number, line in enumerate(path.read_text("utf-8").splitlines(), 1):
                if token in line:
                    return path, number
        return template_dir, None

    return locate


def _without_name(content: str, name: str) -> str:
    if not name:
        return content
    return content.replace(str(escape(name)), "NAME").replace(name, "NAME")
