"""`herald validate`: every check that must pass before a campaign may launch.

Loads the campaign, its catalogs (the notice's and the objection's) and glossary, then
renders every (locale x channel) for sample users, and every objection page and
confirmation, and scans the output. Reads files; otherwise pure.
"""

from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

from engine.authoring.campaigns import PAGES, Campaign, LoadedCampaign, load_campaign
from engine.authoring.catalogcheck import (
    SourceMessage,
    check_catalog,
    check_glossary,
    extract_messages,
    load_glossary,
)
from engine.authoring.i18n import Catalogs, read_po_file
from engine.authoring.objectioncheck import check_objection
from engine.authoring.outputscan import (
    SAMPLE_TOKEN,
    SAMPLE_USERS,
    Locator,
    locator,
    scan_output,
)
from engine.authoring.rendering import Renderer
from engine.authoring.specs import link_problems, notice_folders, objection_folders
from engine.authoring.templatecheck import (
    TemplateSource,
    check_references,
    check_templates,
    parse_templates,
)
from engine.errors import CampaignError, Problem, TemplateError
from engine.models import Channel, LocaleChoice, LocaleSource

SUBJECT_LIMIT = 78  # characters (RFC 5322's line length; what a phone's inbox shows)


@dataclass
class ValidationReport:
    path: Path
    campaign: Campaign | None = None
    loaded: LoadedCampaign | None = None  # what was checked, for a command that goes on
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
    c, project = loaded.campaign, loaded.project
    report.campaign, report.loaded = c, loaded
    report.problems += loaded.warnings
    report.problems += link_problems(loaded)
    if Channel.EMAIL in c.channels and c.sender.return_path is None:
        report.problems.append(
            Problem(
                path,
                "no sender.return_path: bounces will be matched by Message-ID only, and "
                "only when the DSN quotes the original headers",
                key="sender.return_path",
                severity="warning",
            )
        )
    notices = Catalogs(project.locales)
    objections = Catalogs.objection(project.locales, notices)
    report.locales = tuple(sorted(notices.available))
    if c.locales.default not in notices.available:
        report.problems.append(
            Problem(
                loaded.path,
                f"locales.default {c.locales.default!r} has no catalog in {project.locales}",
                key="locales.default",
            )
        )
    glossary = None
    if c.locales.glossary:  # one file for both domains: read it once
        glossary_path = project.locales / c.locales.glossary
        terms, problems = load_glossary(glossary_path)
        glossary, report.problems = (terms, glossary_path), report.problems + problems
    # What the templates may name: the spec's folders on their own side (a notice
    # renders with messages.po only, so a partial of the objection's would go out in
    # English), and the one variable the pages use for a folder name.
    known = {"objection_template": c.objection.template}
    sources = parse_templates([project.templates / c.template, project.templates / "layouts"])
    report.problems += _check_translations(loaded, notices, sources, "babel.cfg", glossary)
    report.problems += check_templates(sources)
    report.problems += check_references(sources, notice_folders(c), known)
    sources = parse_templates([project.templates / c.objection.template, project.templates / PAGES])
    report.problems += _check_translations(
        loaded, objections, sources, "babel-objection.cfg", glossary
    )
    report.problems += check_templates(sources)
    report.problems += check_references(sources, objection_folders(c), known)
    for locale in sorted(objections.available - notices.available):
        report.problems.append(
            Problem(
                objections.po_path(locale),
                f"an objection catalog without messages.po: {locale} is not one of the "
                "campaign's languages (a campaign speaks each language with a messages.po "
                "under locales/), so no notice goes out in it",
                severity="warning",
            )
        )
    for locale in sorted(notices.available - objections.available):
        report.problems.append(
            Problem(
                objections.po_path(locale),
                "missing: the objection page and the confirmation need every language "
                "of the notice (pybabel init -D objection)",
                severity="error" if c.locales.require_complete else "warning",
            )
        )
    # Every locale renders but those whose catalogs have errors, which rendering would only
    # repeat: one broken catalog does not hide a template's problems.
    broken = _broken_locales(report.problems, project.locales)
    count, problems = _check_renders(loaded, notices, broken)
    report.renders, report.problems = count, report.problems + problems
    count, problems = check_objection(loaded, objections, broken)
    report.renders, report.problems = report.renders + count, report.problems + problems
    # The same problem found twice (a glossary entry missing a locale, checked for both
    # domains; a field that does not exist, found in the source and again by a render) is
    # said once.
    report.problems = _said_once(report.problems)
    return report


def _said_once(problems: list[Problem]) -> list[Problem]:
    fields = {
        (Path(p.path).parts[-2:], p.line) for p in problems if " does not exist: " in p.message
    }
    return [
        p
        for p in dict.fromkeys(problems)
        if not (p.message.startswith("undefined: ") and (Path(p.path).parts[-2:], p.line) in fields)
    ]


Glossary = tuple[dict[str, dict[str, tuple[str, ...]]], Path]  # terms, and their file


def _check_translations(
    loaded: LoadedCampaign,
    catalogs: Catalogs,
    templates: list[TemplateSource],
    mapping: str,
    glossary: Glossary | None,
) -> list[Problem]:
    """One domain's catalogs against the messages its template folders hold."""
    c, project = loaded.campaign, loaded.project
    sources, out = extract_messages(templates)
    severity = "error" if c.locales.require_complete else "warning"
    for locale in sorted(catalogs.available):
        out += check_catalog(catalogs, locale, sources, severity=severity)
    pot = project.locales / f"{catalogs.domain}.pot"
    out += _check_pot(pot, sources, f"pybabel extract -F {mapping} -o locales/{pot.name} .")
    if glossary:
        terms, glossary_path = glossary
        for locale in sorted(catalogs.available):
            out += check_glossary(catalogs, locale, terms, sources, glossary_path)
    return out


def _check_pot(pot: Path, sources: dict[str, SourceMessage], command: str) -> list[Problem]:
    if not pot.exists():
        return [Problem(pot, f"no message template: run {command}", severity="warning")]
    stale = sorted(set(sources) - {m.id for m in read_po_file(pot) if m.id})
    if stale:
        return [
            Problem(
                pot,
                f"out of date, {len(stale)} message(s) missing: run {command}",
                severity="warning",
            )
        ]
    return []


def _broken_locales(problems: list[Problem], locales: Path) -> set[str]:
    """The locales with an error in one of their catalogs (locales/LOCALE/...)."""
    broken = set()
    for problem in problems:
        path = Path(problem.path)
        if problem.severity == "error" and path.is_relative_to(locales) and path != locales:
            broken.add(path.relative_to(locales).parts[0])
    return broken


def _check_renders(
    loaded: LoadedCampaign, catalogs: Catalogs, skip: Collection[str]
) -> tuple[int, list[Problem]]:
    c = loaded.campaign
    templates = loaded.project.templates
    renderer = Renderer(templates, catalogs)
    url = c.objection.url.format(token=SAMPLE_TOKEN)
    locate = locator(catalogs, *(templates / name for name in notice_folders(c)))
    channels = (*c.channels, *([c.fallback] if c.fallback else []))
    seen: dict[str, Problem] = {}
    count = 0
    for locale in sorted(catalogs.available - set(skip)):
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
                if channel is Channel.EMAIL and len(message.subject) > SUBJECT_LIMIT:
                    path, line = _locate_subject(locate, message.subject, locale)
                    seen.setdefault(
                        f"subject:{locale}",
                        Problem(
                            path,
                            f"the subject is {len(message.subject)} characters long; phones "
                            f"cut it off after about {SUBJECT_LIMIT}: {message.subject!r}",
                            line,
                            key=f"[{locale}] email",
                            severity="warning",
                        ),
                    )
                for problem in scan_output(c, message, user, url, locate):
                    # once per source line and channel, not once per locale and sample user
                    where = f"{problem.path}:{problem.line}:{channel}:{problem.message}"
                    seen.setdefault(where, problem)
    return count, list(seen.values())


def _locate_subject(locate: Locator, subject: str, locale: str) -> tuple[Path, int | None]:
    """The catalog entry a subject comes from: found by its longest word (the rest may be
    a date or a name)."""
    for word in sorted(subject.split(), key=len, reverse=True)[:3]:
        path, line = locate(word, locale)
        if line is not None:
            return path, line
    return locate("", locale)
