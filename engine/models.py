"""Value types passed between pipeline stages. Pure: no I/O."""

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Channel(StrEnum):
    EMAIL = "email"
    INAPP = "inapp"


class LocaleSource(StrEnum):
    """How a message's locale was chosen, in order of preference."""

    USER = "user"  # the user's own locale, exactly
    USER_LANGUAGE = "user-language"  # the language of the user's locale (de_AT -> de)
    COUNTRY = "country"  # an official language of the user's country
    DEFAULT = "default"  # the campaign's locales.default


@dataclass(frozen=True, slots=True)
class LocaleChoice:
    locale: str
    source: LocaleSource
    fell_back: bool  # the user stated a locale we could not honour, or we used the default


@dataclass(frozen=True, slots=True)
class User:
    """A person to notify. `name` may be empty; everything is as imported (untrusted)."""

    id: str
    email: str | None
    name: str | None
    country: str  # ISO 3166-1 alpha-2
    locale: str | None = None
    timezone: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RenderedMessage:
    """One channel's content for one user, with how its locale was chosen."""

    user_id: str
    channel: Channel
    locale: LocaleChoice
    subject: str  # email subject or in-app title; single line, header-safe
    text: str
    html: str | None = None
