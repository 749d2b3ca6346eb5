"""Catalogs and locales: .po files read directly, the locale choice, Babel formatting.

Reads locales/<locale>/LC_MESSAGES/<domain>.po once per locale; otherwise pure. Two
domains: `messages` (the notices) and `objection` (the objection pages and the
confirmations, which fall back to `messages` for the shared layouts). No .mo
files are needed: each catalog is compiled in memory, so "forgot to compile" cannot
happen.
"""

import datetime as dt
import functools
import io
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from babel import Locale, UnknownLocaleError
from babel.dates import format_date, format_datetime
from babel.lists import format_list
from babel.messages.catalog import Catalog
from babel.messages.mofile import write_mo
from babel.messages.pofile import PoFileError, read_po, unescape
from babel.numbers import format_decimal
from babel.support import NullTranslations, Translations

from engine.authoring.regions import region_data
from engine.errors import Problem
from engine.models import LocaleChoice, LocaleSource

SOURCE_LOCALE = "en"  # the language of the msgids in templates/
_ALIASES = {"no": "nb"}  # Norwegian: "no" is the macrolanguage, Bokmål is what we ship
# A .po line: a comment, or an optional keyword and one complete "quoted string".
_PO_LINE = re.compile(
    r'^\s*(?:#.*|(?:(?:msgctxt|msgid|msgid_plural|msgstr(?:\[\d+\])?)\s+)?"(?:[^"\\]|\\.)*"\s*)$'
)


# A .po line's keyword (none on a continuation line) and its "quoted string", in an
# active entry or an obsolete one (#~), which msgfmt counts as a definition too.
_PO_TOKEN = re.compile(
    r'^\s*(?:#~\s*)?(msgctxt|msgid_plural|msgid|msgstr(?:\[\d+\])?)?\s*(".*")\s*$'
)


def _is_utf8(charset: str) -> bool:
    return charset.lower().replace("_", "-") in ("utf-8", "utf8")


def _declared(path: Path, charset: str, lines: list[str]) -> Problem:
    return Problem(
        path,
        f"the header declares charset={charset}: catalogs are UTF-8 "
        '("Content-Type: text/plain; charset=UTF-8")',
        _header_line(lines),
    )


def _header_line(lines: list[str]) -> int | None:
    """The line of a catalog's Content-Type header, if it has one."""
    return next((n for n, line in enumerate(lines, 1) if "Content-Type:" in line), None)


def duplicate_definitions(text: str) -> list[tuple[int, int, str]]:
    """(line, line of the first, msgid) of each message a .po text defines twice (the
    same msgctxt and msgid), as GNU msgfmt finds them, obsolete entries included: it
    refuses such a file ("duplicate message definition"), and Babel keeps one of the two
    without a word, so a translator's correction written as a second entry may never be
    used. Strings are read as Babel reads them (it does not decode \\x or octal escapes)."""
    tokens: list[list[Any]] = []  # [keyword, line, string pieces]
    for number, line in enumerate(text.splitlines(), 1):
        match = _PO_TOKEN.match(line)
        if match is None:  # a comment, a blank line
            continue
        keyword, quoted = match.groups()
        if keyword:
            tokens.append([keyword, number, [unescape(quoted)]])
        elif tokens:
            tokens[-1][2].append(unescape(quoted))
    seen: dict[tuple[str | None, str], int] = {}
    duplicates = []
    for i, (keyword, number, pieces) in enumerate(tokens):
        if keyword != "msgid":
            continue
        before = tokens[i - 1] if i else None
        context = "".join(before[2]) if before and before[0] == "msgctxt" else None
        key = (context, "".join(pieces))
        if key == (None, ""):  # the header
            continue
        if key in seen:
            duplicates.append((number, seen[key], key[1]))
        else:
            seen[key] = number
    return duplicates


def normalize_locale(value: str) -> str | None:
    """'de-at' -> 'de_AT', 'no_NO' -> 'nb_NO'; None if Babel does not know the locale."""
    language, _, rest = value.strip().replace("-", "_").partition("_")
    language = _ALIASES.get(language.lower(), language)
    try:
        return str(Locale.parse(f"{language}_{rest}" if rest else language))
    except (ValueError, TypeError, UnknownLocaleError):
        return None


class Catalogs:
    """The catalogs of one domain under one locales/ folder; `fallback` answers the
    messages this domain does not hold."""

    def __init__(
        self, locales_dir: Path, domain: str = "messages", fallback: "Catalogs | None" = None
    ) -> None:
        self.dir, self.domain, self.fallback = locales_dir, domain, fallback
        found = (
            {p.parent.parent.name for p in locales_dir.glob(f"*/LC_MESSAGES/{domain}.po")}
            if locales_dir.is_dir()
            else set()
        )
        self.available: frozenset[str] = frozenset(found | {SOURCE_LOCALE})
        self._catalogs: dict[str, Catalog] = {}
        self._translations: dict[str, NullTranslations] = {}
        self._problems: dict[str, Problem | None] = {}

    @classmethod
    def objection(cls, locales_dir: Path, notices: "Catalogs | None" = None) -> "Catalogs":
        """The objection domain, falling back to `notices` (the `messages` domain of the
        same folder; pass the one you hold so each .po is parsed once)."""
        return cls(locales_dir, "objection", fallback=notices or cls(locales_dir))

    def po_path(self, locale: str) -> Path:
        return self.dir / locale / "LC_MESSAGES" / f"{self.domain}.po"

    def catalog(self, locale: str) -> Catalog:
        """The parsed .po of `locale`. Raises PoFileError, OSError."""
        if locale not in self._catalogs:
            with self.po_path(locale).open("rb") as fp:
                self._catalogs[locale] = read_po(fp, locale=locale, abort_invalid=True)
        return self._catalogs[locale]

    def load_problem(self, locale: str) -> Problem | None:
        """Why `locale`'s catalog cannot be read, if it cannot. Read once per locale, as
        the catalog is: each Environment and catalog check asks (167 reads a validation)."""
        if locale not in self._problems:
            self._problems[locale] = self._read_problem(locale)
        return self._problems[locale]

    def _read_problem(self, locale: str) -> Problem | None:
        if locale == SOURCE_LOCALE and not self.po_path(locale).exists():
            return None
        path = self.po_path(locale)
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
            self.catalog(locale)
        except UnicodeDecodeError as exc:
            if not _is_utf8(exc.encoding):  # Babel decodes by the header's charset
                return _declared(path, exc.encoding, lines)
            at = exc.object[: exc.start].count(b"\n") + 1
            byte = exc.object[exc.start]
            return Problem(path, f"cannot read catalog: byte {byte:#04x} is not UTF-8", at)
        except (PoFileError, OSError, ValueError) as exc:
            return Problem(path, f"cannot read catalog: {exc}")
        charset = self.catalog(locale).charset
        if not _is_utf8(charset):
            # Babel (as msgfmt) decodes the file by this header: UTF-8 text read as
            # another charset garbles every non-ASCII letter of the language
            return _declared(path, charset, lines)
        # Babel's parser quietly accepts some broken lines (an unterminated string, say).
        for number, line in enumerate(lines, 1):
            if line.strip() and not _PO_LINE.match(line):
                return Problem(
                    path, f"cannot read catalog: malformed line {line.strip()!r}", number
                )
        return None

    def translations(self, locale: str) -> NullTranslations:
        """Compiled in memory from the .po; fuzzy entries are never used."""
        if locale not in self._translations:
            if locale == SOURCE_LOCALE and not self.po_path(locale).exists():
                self._translations[locale] = NullTranslations()
            else:
                buffer = io.BytesIO()
                write_mo(buffer, self.catalog(locale), use_fuzzy=False)
                buffer.seek(0)
                self._translations[locale] = Translations(fp=buffer)
            if self.fallback is not None and locale in self.fallback.available:
                self._translations[locale].add_fallback(self.fallback.translations(locale))
        return self._translations[locale]

    def choose(
        self,
        user_locale: str | None,
        country: str,
        default: str,
        enabled: Iterable[str] | None = None,
    ) -> LocaleChoice:
        """The locale for one user: theirs, its language, their country's, or `default`.

        `de_AT` -> `de`; `no` -> `nb`; a Belgian with no locale gets the first of
        nl, fr, de that we have. `fell_back` is set when the user stated a locale we
        could not honour, or when nothing better than the default was found.
        """
        have = frozenset(enabled) if enabled is not None else self.available
        stated = normalize_locale(user_locale) if user_locale else None
        if stated:
            language = stated.split("_")[0]
            if stated in have:
                return LocaleChoice(stated, LocaleSource.USER, False)
            if language in have:
                source = LocaleSource.USER if stated == language else LocaleSource.USER_LANGUAGE
                return LocaleChoice(language, source, False)
        code = region_data().country_code(country) or ""
        for language in region_data().country(code).languages if code else ():
            for candidate in (f"{language}_{code}", _ALIASES.get(language, language)):
                if candidate in have:
                    return LocaleChoice(candidate, LocaleSource.COUNTRY, bool(user_locale))
        return LocaleChoice(default, LocaleSource.DEFAULT, True)


@functools.cache
def text_direction(locale: str) -> str:
    """Cached: every render asks (the name isolation of each user's message), and
    Locale.parse cost ~2 µs a call once Babel's data is loaded, ~0.1 s per validation."""
    return "rtl" if Locale.parse(locale).character_order == "right-to-left" else "ltr"


def format_locale(locale: str, country: str | None) -> str:
    """The locale to write dates and numbers in for a reader of `locale` in `country`:
    the language's form for that country when Babel knows it (`en` in GB, IE or MT ->
    `en_GB`, `en_IE`, `en_MT`: "26 June 2024", not the US "June 26, 2024"), else `locale`."""
    if "_" in locale or not country:
        return locale
    candidate = f"{locale}_{country.upper()}"
    return candidate if _known(candidate) else locale


@functools.cache
def _known(locale: str) -> bool:
    try:
        Locale.parse(locale)
    except (ValueError, UnknownLocaleError):
        return False
    return True


# The first of the month is an ordinal in these languages: "1er août", "1º agosto".
_FIRST_OF_MONTH = {"fr": "1er", "it": "1º"}
_DAY_ONE = re.compile(r"(?<!\d)1(?=\s)")
# Italian elides the article before a day said with a vowel (otto, undici):
# "l'8 agosto", "dall'11 agosto", never "il 8", "dal 11".
_IT_MONTHS = (
    "gennaio|febbraio|marzo|aprile|maggio|giugno|luglio|agosto|settembre|ottobre|novembre|dicembre"
)
_IT_ELISION = re.compile(
    r"\b(il|Il|IL|al|Al|dal|Dal|del|Del|nel|Nel|sul|Sul)(?:\s|\u00a0)+(8|11)(?=\s+(?:"
    + _IT_MONTHS
    + r")\b)"
)
_IT_ELIDED = {"il": "l'", "Il": "L'", "IL": "L'"}


class Formatter:
    """Babel formatting for one locale, cached: a campaign formats the same few values."""

    def __init__(self, locale: str) -> None:
        self.locale = Locale.parse(locale)

    @functools.lru_cache(maxsize=256)  # noqa: B019 - one Formatter per locale, kept for the run
    def date(self, value: dt.date, format: str = "long") -> str:
        if isinstance(value, dt.datetime):
            out = str(format_datetime(value, format, locale=self.locale))
        else:
            out = str(format_date(value, format, locale=self.locale))
        first = _FIRST_OF_MONTH.get(self.locale.language)
        if first and value.day == 1 and format in ("long", "full"):
            out = _DAY_ONE.sub(first, out, count=1)
        return out

    def sentence(self, text: str) -> str:
        """Rendered text with the locale's spelling around dates: Italian "l'8 agosto",
        "dall'11 agosto"."""
        if self.locale.language != "it":
            return text
        return _IT_ELISION.sub(_elide, text)

    def number(self, value: float) -> str:
        return str(format_decimal(value, locale=self.locale))

    def list(self, values: Iterable[str], style: str = "standard") -> str:
        return str(format_list(list(values), style=style, locale=self.locale))  # type: ignore[arg-type]


def _elide(match: re.Match[str]) -> str:
    article, day = match.group(1), match.group(2)
    return f"{_IT_ELIDED.get(article, article + 'l' + chr(39))}{day}"


def read_po_file(path: Path) -> Catalog:
    with path.open("rb") as fp:
        return read_po(fp)
