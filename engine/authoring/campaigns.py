"""Campaign definitions: campaigns/*.yaml -> Campaign. Reads files; otherwise pure."""

import datetime as dt
import difflib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)

from engine.authoring.regions import region_data
from engine.authoring.yamlsource import KeyPath, LocatedYaml, load_located
from engine.errors import CampaignError, Problem
from engine.models import CampaignRecord, Channel

Slug = Annotated[str, Field(pattern=r"^[a-z0-9-]{3,64}$")]
Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
TEMPLATE_FILES = {
    Channel.EMAIL: ("email_subject.txt", "email.html", "email.txt"),
    Channel.INAPP: ("inapp_title.txt", "inapp_body.txt"),
}
OBJECTION_PAGE_FILES = ("summary.html", "confirmed.html")  # parts of the objection pages
PAGES = "pages"  # templates/pages/: the objection service's pages, shared by all campaigns


class _Spec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class Policy(_Spec):
    version: str = Field(min_length=1)
    purpose: Slug = Field(description="The processing purpose a user can object to.")
    effective_date: dt.date
    min_lead_days: int = Field(30, ge=0, description="Warn when start is closer than this.")
    controller: str | None = Field(None, description="Name of the data controller.")
    url: str | None = Field(None, description="Where the full privacy policy is published.")
    contact: str | None = Field(None, description="How to reach the data protection officer.")


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
    template: Slug = Field(
        description="Folder under templates/ with the objection page's summary and "
        "confirmation (summary.html, confirmed.html) and the confirmation message "
        "sent after an objection (the same files as a notice's template)."
    )


class Sender(_Spec):
    from_: str = Field(alias="from", min_length=3)
    reply_to: str | None = None


class SendWindow(_Spec):
    days: tuple[Day, ...] = Field(("mon", "tue", "wed", "thu", "fri"), min_length=1)
    from_: dt.time = Field(alias="from")
    to: dt.time
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
        )


@dataclass(frozen=True)
class Project:
    """A Herald project folder: campaigns/, templates/ and locales/ side by side."""

    root: Path

    @property
    def templates(self) -> Path:
        return self.root / "templates"

    @property
    def locales(self) -> Path:
        return self.root / "locales"

    @property
    def campaigns(self) -> Path:
        return self.root / "campaigns"

    @classmethod
    def around(cls, campaign_path: Path) -> "Project":
        """The project holding `campaign_path`: the parent of its campaigns/ folder, else cwd."""
        folder = campaign_path.resolve().parent
        return cls(folder.parent if folder.name == "campaigns" else Path.cwd())


@dataclass(frozen=True)
class LoadedCampaign:
    campaign: Campaign
    path: Path
    project: Project
    warnings: tuple[Problem, ...]


def resolve_campaign_path(arg: str, cwd: Path | None = None) -> Path:
    """A campaign given as a path, or as an id under ./campaigns/."""
    path = Path(arg)
    if path.exists() or path.suffix in (".yaml", ".yml"):
        return path
    return (cwd or Path.cwd()) / "campaigns" / f"{arg}.yaml"


def load_campaign(path: Path, project: Project | None = None) -> LoadedCampaign:
    """Parse and check one campaign file.

    Raises CampaignError with every problem found, each naming the file, line, column
    and key path. Warnings (e.g. a short lead time) come back on the result.
    """
    project = project or Project.around(path)
    located, problems = load_located(path)
    if located is None or located.data is None:
        raise CampaignError(problems)
    if not isinstance(located.data, dict):
        raise CampaignError([located.problem((), "expected a mapping of keys at the top")])
    try:
        campaign = Campaign.model_validate(located.data)
    except ValidationError as exc:
        problems += [_explain(error, located) for error in exc.errors()]
        raise CampaignError(sorted(problems, key=_order)) from exc
    problems += _cross_checks(campaign, located, project)
    errors = [p for p in problems if p.severity == "error"]
    if errors:
        raise CampaignError(sorted(errors, key=_order))
    warnings = tuple(p for p in problems if p.severity != "error")
    return LoadedCampaign(campaign, path, project, warnings)


def campaign_json_schema() -> str:
    schema = Campaign.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "Herald campaign"
    return json.dumps(schema, indent=2)


def _order(p: Problem) -> tuple[int, int]:
    return (p.line or 0, p.column or 0)


def _explain(error: Any, located: LocatedYaml) -> Problem:
    loc: KeyPath = tuple(error["loc"])
    kind = error["type"]
    if kind == "extra_forbidden":
        allowed = _allowed_keys(loc[:-1])
        hint = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        message = f"unknown key {loc[-1]!r}"
        message += f" (did you mean {hint[0]!r}?)" if hint else ""
        return located.problem(loc, f"{message}; expected one of: {', '.join(allowed)}", key=True)
    if kind == "missing":
        return located.problem(loc, f"required key {loc[-1]!r} is missing")
    got = error.get("input")
    shown = "" if isinstance(got, dict | list) else f" (got {_show(got)})"
    message = error["msg"].replace("Value error, ", "")
    message = message.replace("Input should be", "expected").replace("Input should", "expected")
    if kind == "timezone_aware":
        message = "expected a date-time with a time zone, e.g. 2024-05-22T07:00:00Z"
    return located.problem(loc, f"{message}{shown}")


def _show(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def _allowed_keys(loc: KeyPath) -> list[str]:
    model: type[BaseModel] = Campaign
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(str(part))
        if field is None:
            field = next((f for f in model.model_fields.values() if f.alias == part), None)
        target = _model_in(field.annotation) if field else None
        if target is None:
            return []
        model = target
    return [f.alias or name for name, f in model.model_fields.items()]


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return None


def _cross_checks(c: Campaign, located: LocatedYaml, project: Project) -> list[Problem]:
    out: list[Problem] = []

    def problem(loc: KeyPath, message: str, severity: str = "error") -> None:
        out.append(located.problem(loc, message, severity=severity))

    if c.id != located.path.stem:
        problem(("id",), f"must match the file name {located.path.stem!r}")
    data = region_data()
    for i, name in enumerate(c.audience.regions):
        if data.expand(name) is None:
            known = ", ".join(sorted(data.regions))
            problem(
                ("audience", "regions", i),
                f"unknown region or country {name!r}; regions are {known}, "
                "or use an ISO 3166-1 alpha-2 code",
            )
    for i, code in enumerate(c.audience.exclude_countries):
        if data.country_code(code) is None:
            problem(
                ("audience", "exclude_countries", i),
                f"unknown country code {code!r}; expected ISO 3166-1 alpha-2",
            )
    if c.fallback is not None and c.fallback in c.channels:
        problem(
            ("fallback",),
            f"{c.fallback.value!r} is already in channels; the fallback "
            "must be a channel not listed there",
        )
    url = c.objection.url
    if url.count("{token}") != 1 or url.replace("{token}", "").count("{"):
        problem(
            ("objection", "url"),
            "must contain {token} exactly once and no other braces",
        )
    if not url.startswith(("https://", "http://")):
        problem(("objection", "url"), "expected an absolute https:// URL")
    sched = c.schedule
    if sched.start >= sched.deadline:
        problem(("schedule", "deadline"), f"must be after schedule.start ({sched.start})")
    effective = dt.datetime.combine(c.policy.effective_date, dt.time(0), dt.UTC)
    if sched.deadline >= effective:
        problem(
            ("schedule", "deadline"),
            f"must be before policy.effective_date ({c.policy.effective_date}): "
            "everyone must be told before the change takes effect",
        )
    lead = (c.policy.effective_date - sched.start.date()).days
    if lead < c.policy.min_lead_days:
        problem(
            ("schedule", "start"),
            f"only {lead} days before policy.effective_date; policy.min_lead_days "
            f"asks for {c.policy.min_lead_days}",
            severity="warning",
        )
    window = sched.send_window
    if window is not None:
        if window.from_ == window.to:
            problem(("schedule", "send_window", "to"), "must differ from 'from'")
        if len(set(window.days)) != len(window.days):
            problem(("schedule", "send_window", "days"), "each day may be listed once")
    template_dir = project.templates / c.template
    if not template_dir.is_dir():
        problem(("template",), f"template folder {template_dir} does not exist")
    else:
        for channel in (*c.channels, *([c.fallback] if c.fallback else [])):
            for name in TEMPLATE_FILES[channel]:
                if not (template_dir / name).is_file():
                    problem(
                        ("template",),
                        f"{template_dir / name} is missing; the {channel.value} channel needs it",
                    )
    objection_dir = project.templates / c.objection.template
    if not objection_dir.is_dir():
        problem(("objection", "template"), f"template folder {objection_dir} does not exist")
    else:
        needed = [*OBJECTION_PAGE_FILES, *TEMPLATE_FILES[Channel.INAPP]]
        if Channel.EMAIL in (*c.channels, c.fallback):
            needed += TEMPLATE_FILES[Channel.EMAIL]
        for name in needed:
            if not (objection_dir / name).is_file():
                problem(("objection", "template"), f"{objection_dir / name} is missing")
    if c.locales.glossary and not (project.locales / c.locales.glossary).is_file():
        problem(
            ("locales", "glossary"),
            f"glossary file {project.locales / c.locales.glossary} does not exist",
        )
    return out
