"""The synthetic audience generator: deterministic, realistic enough, and streaming."""

import itertools
import sys
import tracemalloc
import unicodedata
import zoneinfo

from babel import Locale

from engine.authoring.regions import region_data
from engine.delivery.synthetic import _countries, generate_users

SAMPLE = list(generate_users(5_000))
REQUIRED = set(
    "AT BE BG HR CY CZ DK EE FI FR DE GR HU IE IT LV LT LU MT NL PL PT RO SK SI ES SE "
    "IS LI NO GB CH US BR IN JP EG SA IR".split()
)


def _scripts(text: str) -> set[str]:
    """Unicode script-ish names of the letters in `text` ("GREEK", "LATIN", ...)."""
    return {unicodedata.name(ch).split()[0] for ch in text if ch.isalpha()}


def test_same_seed_same_users_other_seed_differs() -> None:
    assert list(generate_users(500, seed=7)) == list(generate_users(500, seed=7))
    assert list(generate_users(500, seed=7)) != list(generate_users(500, seed=8))
    assert list(generate_users(500)) == SAMPLE[:500]  # a prefix does not depend on count


def test_users_have_exactly_the_user_fields() -> None:
    keys = {"id", "email", "name", "country", "locale", "timezone"}
    assert all(set(user) == keys for user in SAMPLE)
    assert SAMPLE[41]["id"] == "u0000042"


def test_ids_and_emails_are_unique_ascii_and_reserved() -> None:
    assert len({u["id"] for u in SAMPLE}) == len({u["email"] for u in SAMPLE}) == len(SAMPLE)
    for user in SAMPLE:
        email = user["email"]
        assert email is not None
        assert email.isascii()
        local, domain = email.split("@")
        assert local == user["id"]
        assert domain in {"example.org", "example.com", "example.net"}


def test_most_users_are_in_the_eea_or_the_uk() -> None:
    regions = region_data().regions
    europe = regions["EEA"] | regions["UK"]
    share = sum(u["country"] in europe for u in SAMPLE) / len(SAMPLE)
    assert 0.85 <= share <= 0.92


def test_data_covers_every_required_country() -> None:
    assert set(_countries()) == REQUIRED
    assert all(region_data().country_code(u["country"] or "") for u in SAMPLE)


def test_timezones_and_locales_are_valid_and_belong_to_the_country() -> None:
    for code, country in _countries().items():
        for zone in country["timezones"]:
            zoneinfo.ZoneInfo(zone)
        for locale in country["locales"]:
            territory = Locale.parse(locale).territory
            assert territory in (None, code), (code, locale)
    for user in SAMPLE:
        country = _countries()[user["country"] or ""]
        assert user["locale"] is None or user["locale"] in country["locales"]
        assert user["timezone"] is None or user["timezone"] in country["timezones"]


def test_some_fields_are_missing_as_in_real_imports() -> None:
    def share(field: str) -> float:
        return sum(u[field] is None for u in SAMPLE) / len(SAMPLE)

    assert 0.04 < share("name") < 0.08
    assert 0.08 < share("locale") < 0.12
    assert 0.01 < share("timezone") < 0.03


def test_names_are_in_the_country_script() -> None:
    greek = [u["name"] for u in SAMPLE if u["country"] == "GR" and u["name"]]
    assert greek
    assert all(_scripts(name) == {"GREEK"} for name in greek)
    expected = {"BG": {"CYRILLIC"}, "GR": {"GREEK"}, "CY": {"GREEK"}, "IN": {"DEVANAGARI"}}
    expected |= {"EG": {"ARABIC"}, "SA": {"ARABIC"}, "IR": {"ARABIC"}, "JP": {"CJK", "HIRAGANA"}}
    for code, country in _countries().items():
        names = country["given"] + country["family"]
        names += country.get("feminine", {}).get("given", [])
        names += country.get("feminine", {}).get("family", [])
        allowed = expected.get(code, {"LATIN"})
        assert all(_scripts(name) <= allowed for name in names), code


def test_name_order() -> None:
    japanese = next(u["name"] for u in SAMPLE if u["country"] == "JP" and u["name"])
    assert " " not in japanese
    hungarian = next(u["name"] for u in SAMPLE if u["country"] == "HU" and u["name"])
    family, given = hungarian.split(" ")
    assert family in _countries()["HU"]["family"]
    assert given in _countries()["HU"]["given"]


def test_generating_many_users_does_not_grow_memory() -> None:
    # Tracing every allocation makes Python ~4x slower, so the exact peak is traced over the
    # first 20,000 users (all of them held would take ~10 MB: eager lists, leaks of users),
    # and the remaining 180,000 only count live memory blocks (any per-user leak shows).
    users = generate_users(200_000)
    next(users)  # the data are loaded once, before measuring
    tracemalloc.start()
    try:
        for _ in itertools.islice(users, 20_000):
            pass
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 5 * 1024 * 1024
    blocks = sys.getallocatedblocks()
    assert sum(1 for _ in users) == 200_000 - 20_001
    assert sys.getallocatedblocks() - blocks < 1_000
