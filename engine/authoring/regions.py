"""Regions and countries as data (engine/data/regions.yaml). Reads package data once."""

import functools
from dataclasses import dataclass
from importlib import resources

import yaml
from babel import Locale
from babel.languages import get_official_languages

# CLDR territory codes that are not countries a user can live in.
_NOT_COUNTRIES = frozenset(
    {"EU", "EZ", "UN", "QO", "XA", "XB", "ZZ", "EA", "IC", "AC", "CP", "CQ", "DG", "TA"}
)


@dataclass(frozen=True, slots=True)
class Country:
    code: str
    name: str
    languages: tuple[str, ...]  # official languages, the usual one first
    timezone: str | None  # main IANA zone, for users who have none


@dataclass(frozen=True, slots=True)
class RegionData:
    aliases: dict[str, str]
    regions: dict[str, frozenset[str]]
    countries: dict[str, Country]  # the countries we hold extra data for
    known: frozenset[str]  # every ISO 3166-1 alpha-2 code CLDR knows

    def country_code(self, code: str) -> str | None:
        """ISO code for `code` (case-insensitive, EL/UK aliases), or None if unknown."""
        upper = code.strip().upper()
        upper = self.aliases.get(upper, upper)
        return upper if upper in self.known else None

    def expand(self, name: str) -> frozenset[str] | None:
        """Countries of a region name or a single country code; None if neither."""
        upper = name.strip().upper()
        if upper in self.regions:
            return self.regions[upper]
        code = self.country_code(upper)
        return frozenset({code}) if code else None

    def country(self, code: str) -> Country:
        """Data for a known country code; CLDR fills in countries outside our file."""
        if code in self.countries:
            return self.countries[code]
        languages = tuple(get_official_languages(code, regional=False, de_facto=True))
        name = Locale("en").territories.get(code, code)
        return Country(code, name, languages, None)


@functools.cache
def region_data() -> RegionData:
    raw = yaml.safe_load(resources.files("engine").joinpath("data/regions.yaml").read_text("utf-8"))
    regions: dict[str, frozenset[str]] = {}
    for name, members in raw["regions"].items():  # "+EU" includes a region defined above
        codes: set[str] = set()
        for member in members:
            codes |= regions[member[1:]] if member.startswith("+") else {member}
        regions[name] = frozenset(codes)
    countries = {
        code: Country(code, c["name"], tuple(c["languages"]), c["timezone"])
        for code, c in raw["countries"].items()
    }
    known = frozenset(
        code
        for code in map(str, Locale("en").territories)
        if len(code) == 2 and code.isalpha() and code not in _NOT_COUNTRIES
    )
    return RegionData(dict(raw["aliases"]), regions, countries, known)
