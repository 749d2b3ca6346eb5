"""Catalog checks: completeness, placeholders and required terms per locale. Reads .po/.yaml."""

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from babel.messages.catalog import Message
from babel.messages.extract import extract
from jinja2 import nodes
from jinja2.ext import extract_from_ast

from engine.authoring.i18n import SOURCE_LOCALE, Catalogs, duplicate_definitions
from engine.authoring.templatecheck import TemplateSource
from engine.authoring.yamlsource import load_located
from engine.errors import Problem

_PERCENT = re.compile(r"%\(\w+\)[sdif]|%[sdif]")
_BRACE = re.compile(r"\{\w*\}")  # Babel's checker does not look at these
_JINJA = re.compile(r"\{\{|\}\}|\{%|%\}")
_LONE_PERCENT = re.compile(r"%")  # once %%, %(name)s and %s are taken out
_WORD = re.compile(r"[^\W\d_]{2,}")  # a word of two letters or more, in any script
# Anything placeholder-like, in any script: "<نام>", "{имя}", "%(nom)s".
_PLACEHOLDER_LIKE = re.compile(
    r"<[^<>\s][^<>\n]{0,40}>|\{[^{}\n]{0,40}\}|%\([^()\n]{0,40}\)[sdif]?"
)
EXTRACT_OPTIONS = {"extensions": "jinja2.ext.i18n", "trimmed": "true"}


@dataclass(frozen=True, slots=True)
class SourceMessage:
    msgid: str
    path: Path
    line: int


def extract_messages(
    templates: Iterable[TemplateSource],
) -> tuple[dict[str, SourceMessage], list[Problem]]:
    """Every msgid marked in the templates, with where it first appears: what
    `pybabel extract` finds (Babel's `extract`, on the trees parse_templates made)."""
    found: dict[str, SourceMessage] = {}
    problems: list[Problem] = []
    for template in templates:
        if template.not_utf8:
            exc = template.not_utf8
            problems.append(
                Problem(template.path, f"not UTF-8 text: {exc.reason} at byte {exc.start}")
            )
            continue
        if template.tree is None:  # a syntax error: pybabel skips the file too
            continue
        with template.path.open("rb") as fileobj:  # Babel names it in a warning
            extracted = extract(_parsed(template.tree), fileobj, options=EXTRACT_OPTIONS)
            for line, message, _comments, _context in extracted:
                msgid = message if isinstance(message, str) else message[0]
                if msgid and msgid not in found:
                    found[msgid] = SourceMessage(msgid, template.path, line)
    return found, problems


def _parsed(tree: nodes.Template) -> Any:  # Babel's hints type its rows as extract's
    """An extraction method for Babel that yields what jinja2.ext.babel_extract yields
    for this tree (no comments: none are asked for), without parsing the file again."""

    def method(
        fileobj: Any, keywords: Iterable[str], comment_tags: Any, options: Any
    ) -> Iterator[tuple[int, str, Any, list[str]]]:
        for line, function, message in extract_from_ast(tree, tuple(keywords)):
            yield line, function, message, []

    return method


def placeholders(text: str) -> list[str]:
    return sorted(_PERCENT.findall(text) + _BRACE.findall(text))


def check_catalog(
    catalogs: Catalogs,
    locale: str,
    sources: dict[str, SourceMessage],
    *,
    severity: str = "error",
) -> list[Problem]:
    """Missing, fuzzy, untranslated and placeholder-mismatched messages of one locale."""
    if locale == SOURCE_LOCALE and not catalogs.po_path(locale).exists():
        return []
    unreadable = catalogs.load_problem(locale)
    if unreadable:
        return [unreadable]
    catalog, path = catalogs.catalog(locale), catalogs.po_path(locale)
    out: list[Problem] = []

    def problem(message: str, line: int | None, msgid: str) -> None:
        out.append(Problem(path, message, line, None, f"msgid {_short(msgid)!r}", severity))

    for line, first, msgid in duplicate_definitions(path.read_text(encoding="utf-8")):
        out.append(
            Problem(
                path,
                f"the message is defined twice, first at line {first}: Babel uses one "
                "and drops the other without a word, msgfmt refuses the file; keep one",
                line,
                None,
                f"msgid {_short(msgid)!r}",
            )
        )

    for msgid, source in sources.items():
        entry = catalog.get(msgid)
        if entry is None:
            where = f"{source.path}:{source.line}"
            problem(
                f"missing translation (the message comes from {where}; run "
                "pybabel extract and pybabel update)",
                None,
                msgid,
            )
            continue
        strings = msgstrs(entry)
        if entry.fuzzy:
            problem(
                "fuzzy translation: review it and remove the fuzzy flag",
                entry.lineno,
                msgid,
            )
        elif not all(text.strip() for text in strings):
            problem("untranslated: msgstr is empty (or only spaces)", entry.lineno, msgid)
            continue
        elif _unchanged(locale, msgid, strings):
            problem(
                "untranslated: msgstr is the English source, word for word",
                entry.lineno,
                msgid,
            )
        for text in strings:
            if placeholders(text) != placeholders(msgid):
                problem(
                    f"placeholders {placeholders(text)} differ from the source's "
                    f"{placeholders(msgid)}",
                    entry.lineno,
                    msgid,
                )
            if _JINJA.search(text):
                problem("template syntax in a translation", entry.lineno, msgid)
            if _LONE_PERCENT.search(_PERCENT.sub("", text.replace("%%", ""))):
                problem(
                    "a lone % in the translation: write %% for a percent sign (every message "
                    "is a format string)",
                    entry.lineno,
                    msgid,
                )
            for token in residue(text, msgid):
                problem(
                    f"placeholder residue {token!r} in the translation: the source has no "
                    "such placeholder or markup",
                    entry.lineno,
                    msgid,
                )
    return out


def _unchanged(locale: str, msgid: str, strings: tuple[str, ...]) -> bool:
    """A sentence (three words or more) left in English in another language: a name, an
    address or a short label may be the same in both."""
    if locale.split("_")[0] == SOURCE_LOCALE or len(_WORD.findall(msgid)) < 3:
        return False
    return any(" ".join(text.split()) == " ".join(msgid.split()) for text in strings)


def residue(text: str, msgid: str) -> list[str]:
    """Placeholder-like tokens in a translation that its source does not hold; those
    `placeholders()` compares are left to that check."""
    source = set(_PLACEHOLDER_LIKE.findall(msgid))
    compared = set(placeholders(text))
    return sorted(
        {t for t in _PLACEHOLDER_LIKE.findall(text) if t not in source and t not in compared}
    )


def load_glossary(
    path: Path,
) -> tuple[dict[str, dict[str, tuple[str, ...]]], list[Problem]]:
    """locales/glossary.yaml: source term -> locale -> accepted forms (any one suffices)."""
    located, problems = load_located(path)
    if located is None or not isinstance(located.data, dict):
        return {}, problems or [Problem(path, "expected a mapping: term -> locale -> forms")]
    terms: dict[str, dict[str, tuple[str, ...]]] = {}
    for term, per_locale in located.data.items():
        if not isinstance(per_locale, dict):
            problems.append(located.problem((term,), "expected a mapping of locale -> forms"))
            continue
        terms[str(term).lower()] = {}
        for locale, forms in per_locale.items():
            forms = [forms] if isinstance(forms, str) else forms
            if (
                not isinstance(forms, list)
                or not forms
                or not all(isinstance(f, str) and f.strip() for f in forms)
            ):
                problems.append(
                    located.problem((term, locale), "expected a term or a list of accepted forms")
                )
                continue
            terms[str(term).lower()][str(locale)] = tuple(f.lower() for f in forms)
    return terms, problems


def check_glossary(
    catalogs: Catalogs,
    locale: str,
    glossary: dict[str, dict[str, tuple[str, ...]]],
    sources: dict[str, SourceMessage],
    glossary_path: Path,
) -> list[Problem]:
    """Each translation of a message holding a glossary term uses the required term."""
    if locale == SOURCE_LOCALE or catalogs.load_problem(locale):
        return []
    catalog, path = catalogs.catalog(locale), catalogs.po_path(locale)
    out: list[Problem] = []
    for term, per_locale in glossary.items():
        forms = per_locale.get(locale)
        if forms is None:
            out.append(
                Problem(
                    glossary_path,
                    f"no required term for locale {locale!r}",
                    key=term,
                    severity="warning",
                )
            )
            continue
        for msgid in sources:
            entry = catalog.get(msgid)
            if term not in msgid.lower() or entry is None or not entry.string:
                continue
            if not all(any(f in s.lower() for f in forms) for s in msgstrs(entry)):
                out.append(
                    Problem(
                        path,
                        f"drops the required term for {term!r}: expected "
                        f"one of {list(forms)} (see {glossary_path.name})",
                        entry.lineno,
                        None,
                        f"msgid {_short(msgid)!r}",
                    )
                )
    return out


def msgstrs(entry: Message) -> tuple[str, ...]:
    """Every msgstr of an entry (plural forms included); '' where missing."""
    value = entry.string
    return tuple(value) if isinstance(value, list | tuple) else (value or "",)


def _short(msgid: str, limit: int = 60) -> str:
    return msgid if len(msgid) <= limit else msgid[: limit - 1] + "…"
