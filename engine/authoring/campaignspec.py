"""The campaign file's format (DESIGN section 3) as pydantic models, and its JSON Schema. Pure."""

import datetime as dt
import json
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, WithJsonSchema, field_validator

from engine.authoring.regions import region_data
from engine.models import CampaignRecord, Channel

SLUG = r"[a-z0-9-]{3,64}"  # a campaign id, a template folder
Slug = Annotated[str, Field(pattern=f"^{SLUG}$")]
Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
TEMPLATE_FILES = {
    Channel.EMAIL: ("email_subject.txt", "email.html", "email.txt"),
    Channel.INAPP: ("inapp_title.txt", "inapp_body.txt"),
}
OBJECTION_PAGE_FILES = ("summary.html", "confirmed.html")  # parts of the objection pages
PAGES = "pages"  # templates/pages/: the objection service's pages, shared by all campaigns
STYLESHEET = "herald.css"  # under pages/: their one stylesheet, /static/herald.css


class _Spec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class Policy(_Spec):
    version: str = Field(min_length=1)
    purpose: Slug = Field(description="The processing purpose a user can object to.")
    effective_date: dt.date
    min_lead_days: int = Field(
        30,
        ge=0,
        description="The lead every recipient gets: the deadline may not be later than "
        "effective_date minus this many days.",
    )
    controller: str = Field(min_length=1, description="Name of the data controller.")
    contact: str = Field(min_length=1, description="How to reach the controller (email or URL).")
    dpo: str = Field(min_length=1, description="How to reach the data protection officer.")
    legal_basis: str = Field(min_length=1, description='The legal basis, e.g. "Art. 6(1)(f)".')
    url: str = Field(min_length=1, description="Where the full privacy policy is published.")


class Audience(_Spec):
    regions: tuple[str, ...] = Field(min_length=1, description="Region names or ISO codes.")
    exclude_countries: tuple[str, ...] = ()
    include_objected: bool = Field(
        False,
        description="Also plan users who already objected to policy.purpose (default: "
        "they are left out, as their data is no longer processed for it).",
    )


class Locales(_Spec):
    default: str = "en"
    require_complete: bool = True
    glossary: str | None = Field(None, description="File under locales/ with required terms.")


class Objection(_Spec):
    url: str = Field(description="Must contain {token}.")
    token_ttl_days: int | None = Field(None, ge=1, description="Default: tokens never expire.")
    reason_retention_days: int = Field(
        90, ge=1, description="Optional reasons are purged (by the daemon) after this."
    )
    template: Slug = Field(
        description="Folder under templates/ with the objection page's summary and "
        "confirmation (summary.html, confirmed.html) and the confirmation message "
        "sent after an objection (the same files as a notice's template)."
    )


class Sender(_Spec):
    from_: str = Field(alias="from", min_length=3)
    reply_to: str | None = None
    return_path: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9._-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$",
        description="VERP envelope sender base for bounces (local@bounce-domain, no '+'). "
        "Unset: bounces are matched by Message-ID only.",
    )

    @field_validator("from_", "reply_to")
    @classmethod
    def _one_line(cls, value: str | None) -> str | None:
        """Each becomes a header of every message: a line break would start another."""
        if value is not None and any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
            raise ValueError("a header value: no line breaks or other control characters")
        return value


# JSON Schema's `format: time` is RFC 3339's full-time ("09:00:00Z"); campaign files
# write a time of day ("09:00"), so the schema gives a pattern instead.
TimeOfDay = Annotated[
    dt.time,
    WithJsonSchema(
        {
            "type": "string",
            "pattern": r"^([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9])?$",
            "description": "A time of day, HH:MM, in the recipient's time zone.",
        }
    ),
]


class SendWindow(_Spec):
    days: tuple[Day, ...] = Field(("mon", "tue", "wed", "thu", "fri"), min_length=1)
    from_: TimeOfDay = Field(alias="from")
    to: TimeOfDay
    channels: tuple[Channel, ...] = (Channel.EMAIL,)


class Schedule(_Spec):
    start: AwareDatetime
    deadline: AwareDatetime
    send_window: SendWindow | None = None
    rate_per_second: float = Field(gt=0)
    plan_until: AwareDatetime | dt.date | None = Field(
        None,
        description="After this, replans add no new users (default: policy.effective_date). "
        "The first plan pass plans everyone, whatever the date.",
    )


class Delivery(_Spec):
    retry_base_seconds: float = Field(60, gt=0)
    max_attempts: int = Field(8, ge=1)
    max_bounce_rate: float = Field(0.05, ge=0, le=1, description='"at risk" above this.')
    require_verified_tls: bool = Field(
        False,
        description="Refuse to send over an SMTP session without a verified certificate "
        "(tls=none or verify=false).",
    )


class Campaign(_Spec):
    """One campaign file (DESIGN section 3)."""

    id: Slug
    title: str = Field(min_length=1)
    policy: Policy
    audience: Audience
    channels: tuple[Channel, ...] = Field(min_length=1)
    fallback: Channel | None = None
    template: Slug
    locales: Locales = Locales()
    objection: Objection
    sender: Sender
    schedule: Schedule
    delivery: Delivery = Delivery()

    @field_validator("channels")
    @classmethod
    def _unique_channels(cls, value: tuple[Channel, ...]) -> tuple[Channel, ...]:
        if len(set(value)) != len(value):
            raise ValueError("each channel may be listed once")
        return value

    @property
    def countries(self) -> frozenset[str]:
        """ISO codes targeted: the regions' countries minus the excluded ones."""
        data = region_data()
        included: set[str] = set()
        for name in self.audience.regions:
            included |= data.expand(name) or set()
        excluded = {data.country_code(c) for c in self.audience.exclude_countries}
        return frozenset(included - excluded)

    @property
    def plan_until(self) -> float:
        """When later plan passes stop adding users: schedule.plan_until, else the start of
        the effective date (UTC)."""
        until = self.schedule.plan_until or self.policy.effective_date
        if isinstance(until, dt.datetime):
            return until.timestamp()
        return dt.datetime.combine(until, dt.time(0), dt.UTC).timestamp()

    @property
    def record(self) -> CampaignRecord:
        """What the campaign table keeps of this file."""
        return CampaignRecord(
            self.id,
            self.title,
            self.schedule.start.timestamp(),
            self.schedule.deadline.timestamp(),
            self.schedule.rate_per_second,
            self.objection.reason_retention_days,
        )


def campaign_json_schema() -> str:
    schema = Campaign.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "Herald campaign"
    return json.dumps(schema, indent=2)
