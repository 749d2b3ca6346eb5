import datetime as dt
import os
import re
import shutil
import subprocess

import pytest

from engine.authoring.i18n import Catalogs, Formatter, duplicate_definitions, format_locale
from engine.models import LocaleSource
from tests.conftest import ROOT

CATALOGS = Catalogs(ROOT / "locales")


@pytest.mark.parametrize(
    ("user_locale", "country", "locale", "source", "fell_back"),
    [
        pytest.param("de", "DE", "de", LocaleSource.USER, False, id="exact"),
        pytest.param("de_AT", "AT", "de", LocaleSource.USER_LANGUAGE, False, id="de_AT-to-de"),
        pytest.param("de-at", "AT", "de", LocaleSource.USER_LANGUAGE, False, id="bcp47-spelling"),
        pytest.param("fr", "DE", "fr", LocaleSource.USER, False, id="user-beats-country"),
        pytest.param(None, "BE", "nl", LocaleSource.COUNTRY, False, id="country-language"),
        pytest.param(None, "EL", "el", LocaleSource.COUNTRY, False, id="eurostat-alias"),
        pytest.param("no_NO", "NO", "nb", LocaleSource.USER_LANGUAGE, False, id="no-is-nb"),
        pytest.param("tr", "CY", "el", LocaleSource.COUNTRY, True, id="unshipped-to-country"),
        pytest.param("ja_JP", "JP", "en", LocaleSource.DEFAULT, True, id="default"),
        pytest.param("not a locale", "PL", "pl", LocaleSource.COUNTRY, True, id="garbage"),
    ],
)
def test_choose_follows_the_fallback_chain(user_locale, country, locale, source, fell_back):
    choice = CATALOGS.choose(user_locale, country, "en")
    assert (choice.locale, choice.source, choice.fell_back) == (
        locale,
        source,
        fell_back,
    )


def test_catalogs_ship_26_locales():
    assert len(CATALOGS.available) == 26
    assert {"ga", "mt", "is", "nb", "en"} <= CATALOGS.available


@pytest.mark.parametrize(
    ("locale", "expected"),
    [
        ("de", "26. Juni 2024"),
        ("fr", "26 juin 2024"),
        ("pl", "26 czerwca 2024"),
        ("en", "June 26, 2024"),
    ],
)
def test_formatter_writes_dates_per_locale(locale, expected):
    assert Formatter(locale).date(dt.date(2024, 6, 26), "long") == expected


@pytest.mark.parametrize(
    ("locale", "expected"),
    [
        ("fr", ["1er août 2024", "8 août 2024", "11 août 2024"]),
        ("it", ["1º agosto 2024", "8 agosto 2024", "11 agosto 2024"]),
        ("en_GB", ["1 August 2024", "8 August 2024", "11 August 2024"]),
        ("de", ["1. August 2024", "8. August 2024", "11. August 2024"]),
    ],
)
def test_first_eighth_and_eleventh_are_written_the_locales_way(locale, expected):
    fmt = Formatter(locale)
    assert [fmt.date(dt.date(2024, 8, day), "long") for day in (1, 8, 11)] == expected


@pytest.mark.parametrize(
    ("sentence", "expected"),
    [
        ("Il 8 agosto 2024", "L'8 agosto 2024"),
        ("A partire dal 11 agosto 2024", "A partire dall'11 agosto 2024"),
        ("prima del 8 agosto 2024", "prima dell'8 agosto 2024"),
        ("Il 1º agosto 2024", "Il 1º agosto 2024"),
        ("dal 18 agosto 2024", "dal 18 agosto 2024"),
        ("il 8% dei post", "il 8% dei post"),  # only before a date
    ],
)
def test_italian_elides_the_article_before_a_date(sentence, expected):
    assert Formatter("it").sentence(sentence) == expected
    assert Formatter("fr").sentence(sentence) == sentence


@pytest.mark.parametrize(
    ("country", "expected"), [("GB", "en_GB"), ("IE", "en_IE"), ("MT", "en_MT"), (None, "en")]
)
def test_english_readers_date_locale_follows_their_country(country, expected):
    assert format_locale("en", country) == expected
    assert format_locale("de_AT", country) == "de_AT"  # a stated region wins


_HEADER = 'msgid ""\nmsgstr ""\n"Content-Type: text/plain; charset=UTF-8\\n"\n\n'
_DUPLICATES = {
    "none": 'msgid "a"\nmsgstr "x"\n\nmsgid "b"\nmsgstr "y"\n',
    "same msgid": 'msgid "a"\nmsgstr "x"\n\nmsgid "b"\nmsgstr "y"\n\nmsgid "a"\nmsgstr "z"\n',
    "split over lines": 'msgid "ab"\nmsgstr "x"\n\nmsgid ""\n"a"\n"b"\nmsgstr "z"\n',
    "escapes": 'msgid "say \\"hi\\""\nmsgstr "x"\n\nmsgid ""\n"say \\"hi"\n"\\""\nmsgstr "y"\n',
    "obsolete first": '#~ msgid "a"\n#~ msgstr "x"\n\nmsgid "a"\nmsgstr "y"\n',
    "obsolete previous": 'msgid "a"\nmsgstr "x"\n\n#| msgid "a"\nmsgid "b"\nmsgstr "y"\n',
    "other context": 'msgid "a"\nmsgstr "x"\n\nmsgctxt "menu"\nmsgid "a"\nmsgstr "y"\n',
    "same context": 'msgctxt "m"\nmsgid "a"\nmsgstr "x"\n\nmsgctxt "m"\nmsgid "a"\nmsgstr "y"\n',
    "obsolete": 'msgid "a"\nmsgstr "x"\n\n#~ msgid "a"\n#~ msgstr "y"\n',
    "plural": 'msgid "a"\nmsgid_plural "as"\nmsgstr[0] "x"\nmsgstr[1] "y"\n\n'
    'msgid "a"\nmsgstr "z"\n',
    "three times": 'msgid "a"\nmsgstr "x"\n\nmsgid "a"\nmsgstr "y"\n\nmsgid "a"\nmsgstr "z"\n',
}


@pytest.mark.parametrize("name", list(_DUPLICATES))
def test_duplicate_definitions_are_those_gnu_msgfmt_refuses(name, tmp_path):
    """GNU gettext is the reference for what a .po file defines twice. Without msgfmt this
    skips; with HERALD_REQUIRE_MSGFMT=1 (CI) it fails instead."""
    if shutil.which("msgfmt") is None:
        if os.environ.get("HERALD_REQUIRE_MSGFMT"):
            pytest.fail("GNU gettext's msgfmt is not installed (Debian package gettext)")
        pytest.skip("GNU gettext's msgfmt is not installed (Debian package gettext)")
    path = tmp_path / "messages.po"
    path.write_text(_HEADER + _DUPLICATES[name], encoding="utf-8")
    checked = subprocess.run(
        ["msgfmt", "--output-file=/dev/null", str(path)], capture_output=True, text=True
    )
    theirs = [int(n) for n in re.findall(r":(\d+): duplicate message definition", checked.stderr)]
    ours = [line for line, _, _ in duplicate_definitions(path.read_text(encoding="utf-8"))]
    assert ours == theirs
    assert (checked.returncode != 0) == bool(ours)
