"""Value types passed between pipeline stages. Pure: no I/O."""

import hashlib
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.statuses import DeliveryStatus


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


@dataclass(frozen=True, slots=True)
class SpecFile:
    """One file of a campaign's spec (its YAML, a template, a catalog), as launched."""

    path: str  # relative to the project root, with forward slashes
    content: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()


@dataclass(frozen=True, slots=True)
class CampaignRecord:
    """What the campaign table keeps of a campaign file's schedule."""

    id: str
    title: str
    start_at: float
    deadline_at: float
    rate_per_second: float
    reason_retention_days: int = 90


@dataclass(frozen=True, slots=True)
class Backlog:
    """Open notices of one channel for users in one zone (the user's own, else None for
    their country's), due from `due` on (None: now). What `herald status` projects."""

    channel: str
    timezone: str | None
    country: str
    count: int
    due: float | None


@dataclass(frozen=True, slots=True)
class Rejection:
    """A row of a user file that was not imported, and why."""

    line: int
    reason: str
    user_id: str | None = None


@dataclass(frozen=True, slots=True)
class Row:
    """A clean row of a user file, ready to upsert."""

    line: int
    values: dict[str, Any]  # id, email, name, country, locale, timezone, attributes (JSON text)


@dataclass(frozen=True)
class SendOptions:
    """How a dispatcher runs (`herald send`, `herald demo`, the daemon)."""

    concurrency: int = 8  # messages in flight (SMTP connections)
    batch_size: int = 500
    lease_s: float = 300.0
    max_wait_s: float = 60.0  # stop when nothing is due within this long


@dataclass
class RunSummary:
    """What one dispatcher run did."""

    counts: dict[str, int] = field(default_factory=dict)  # outcomes in this run
    stopped: bool = False  # interrupted before the work ran out

    def add(self, status: "DeliveryStatus") -> None:
        self.counts[status.value] = self.counts.get(status.value, 0) + 1
