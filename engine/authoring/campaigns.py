"""Campaign definitions: campaigns/*.yaml -> Campaign. Reads files; otherwise pure."""

import datetime as dt
import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic.fields import FieldInfo

from engine.authoring.asstored import read_as_stored
from engine.authoring.campaignspec import (
    OBJECTION_PAGE_FILES,
    PAGES,
    SLUG,
    STYLESHEET,
    TEMPLATE_FILES,
    Audience,
    Campaign,
    Locales,
    Objection,
    Policy,
    Schedule,
    SendWindow,
    campaign_json_schema,
)
from engine.authoring.regions import region_data
from engine.authoring.yamlsource import KeyPath, LocatedYaml, load_located
from engine.errors import CampaignError, Problem
from engine.models import Channel

__all__ = [
    "PAGES",
    "SLUG",
    "STYLESHEET",
    "TEMPLATE_FILES",
    "Campaign",
    "LoadedCampaign",
    "Project",
    "SendWindow",
    "campaign_json_schema",
    "load_campaign",
    "resolve_campaign_path",
]


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


def load_campaign(
    path: Path, project: Project | None = None, *, stored: bool = False
) -> LoadedCampaign:
    """Parse and check one campaign file.

    Raises CampaignError with every problem found, each naming the file, line, column
    and key path. Warnings come back on the result.

    `stored`: the file a started campaign was launched with, perhaps by an earlier
    version, read for a report, an export, a receipt or an objection page: what the
    format has added since is mended as asstored.py lists, with a warning.
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
        as_stored = read_as_stored(located.data, exc, located) if stored else None
        if as_stored is None:
            # Check what did parse too, so every problem comes out in one run.
            problems += [_explain(error, located) for error in exc.errors()]
            problems += _cross_checks(_valid_parts(located.data, exc), located, project)
            raise CampaignError(sorted(_errors(problems), key=_order)) from exc
        campaign, problems = as_stored[0], problems + as_stored[1]
    parts = {name: getattr(campaign, name) for name in Campaign.model_fields}
    problems += _cross_checks(parts, located, project, launched=stored)
    if _errors(problems):
        raise CampaignError(sorted(_errors(problems), key=_order))
    warnings = tuple(p for p in problems if p.severity != "error")
    return LoadedCampaign(campaign, path, project, warnings)


def _errors(problems: list[Problem]) -> list[Problem]:
    return [p for p in problems if p.severity == "error"]


def _valid_parts(data: dict[str, Any], exc: ValidationError) -> dict[str, Any]:
    """What the cross-checks can still look at, by field name: the top-level values that
    validate, defaults for absent optional ones, and a section that fails with the fields
    that do validate (the others None)."""
    failed = {error["loc"][0] for error in exc.errors() if error["loc"]}
    parts: dict[str, Any] = {}
    for name, info in Campaign.model_fields.items():
        key = info.alias or name
        if key not in data:
            if not info.is_required():
                parts[name] = info.get_default(call_default_factory=True)
            continue
        model = info.annotation
        if key not in failed and name not in failed:
            parts[name] = _validated(info, data[key])
        elif isinstance(model, type) and issubclass(model, BaseModel):
            if isinstance(data[key], dict):
                section = data[key]
                fields = {
                    n: _validated(f, section[f.alias or n]) if (f.alias or n) in section else None
                    for n, f in model.model_fields.items()
                }
                fields = {n: None if v is _INVALID else v for n, v in fields.items()}
                parts[name] = model.model_construct(**fields)
    return {name: value for name, value in parts.items() if value is not _INVALID}


_INVALID = object()


def _validated(info: FieldInfo, value: Any) -> Any:
    """`value` validated as the field `info` (with its constraints), or _INVALID. The
    constraints only: an alias (sender's `from`) is not a type's, and pydantic warns."""
    field_type: Any = (
        Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
    )
    try:
        return TypeAdapter(field_type).validate_python(value)
    except ValidationError:
        return _INVALID


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
    if kind in ("tuple_type", "list_type"):  # pydantic says "a valid tuple"
        example = got if isinstance(got, str | int) and not isinstance(got, bool) else "a, b"
        message = f"expected a list, e.g. [{example}]"
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


def _cross_checks(
    parts: dict[str, Any], located: LocatedYaml, project: Project, launched: bool = False
) -> list[Problem]:
    """Checks across fields, on whichever sections validated (`parts`, by field name);
    `launched`: of a stored file (see load_campaign)."""
    out: list[Problem] = []

    def problem(loc: KeyPath, message: str, severity: str = "error") -> None:
        out.append(located.problem(loc, message, severity=severity))

    if "id" in parts and parts["id"] != located.path.stem:
        problem(("id",), f"must match the file name {located.path.stem!r}")
    data = region_data()
    audience: Audience | None = parts.get("audience")
    for i, name in enumerate((audience.regions if audience else None) or ()):
        if data.expand(name) is None:
            known = ", ".join(sorted(data.regions))
            problem(
                ("audience", "regions", i),
                f"unknown region or country {name!r}; regions are {known}, "
                "or use an ISO 3166-1 alpha-2 code",
            )
    for i, code in enumerate((audience.exclude_countries if audience else None) or ()):
        if data.country_code(code) is None:
            problem(
                ("audience", "exclude_countries", i),
                f"unknown country code {code!r}; expected ISO 3166-1 alpha-2",
            )
    channels: tuple[Channel, ...] | None = parts.get("channels")
    fallback: Channel | None = parts.get("fallback")
    if channels is not None and fallback is not None and fallback in channels:
        problem(
            ("fallback",),
            f"{fallback.value!r} is already in channels; the fallback "
            "must be a channel not listed there",
        )
    sending = (*(channels or ()), *([fallback] if fallback else []))
    objection: Objection | None = parts.get("objection")
    if objection is not None and objection.url is not None:
        url = objection.url
        if url.count("{token}") != 1 or url.replace("{token}", "").count("{"):
            problem(
                ("objection", "url"),
                "must contain {token} exactly once and no other braces",
            )
        if not url.startswith(("https://", "http://")):
            problem(("objection", "url"), "expected an absolute https:// URL")
    sched: Schedule | None = parts.get("schedule")
    policy: Policy | None = parts.get("policy")
    # A section that failed validation comes partial: its invalid fields are None.
    dated = sched is not None and sched.start is not None and sched.deadline is not None
    if sched is not None and dated and sched.start >= sched.deadline:
        problem(("schedule", "deadline"), f"must be after schedule.start ({sched.start})")
    if (
        sched is not None
        and dated
        and policy
        and None
        not in (
            policy.effective_date,
            policy.min_lead_days,
        )
    ):
        out += _lead_checks(sched, policy, located, launched)
    window = sched.send_window if sched else None
    if window is not None:
        if window.from_ == window.to:
            problem(("schedule", "send_window", "to"), "must differ from 'from'")
        if len(set(window.days)) != len(window.days):
            problem(("schedule", "send_window", "days"), "each day may be listed once")
    template: str | None = parts.get("template")
    template_dir = project.templates / (template or "")
    if template is not None and not template_dir.is_dir():
        problem(("template",), f"template folder {template_dir} does not exist")
    elif template is not None:
        for channel in sending:
            for name in TEMPLATE_FILES[channel]:
                if not (template_dir / name).is_file():
                    problem(
                        ("template",),
                        f"{template_dir / name} is missing; the {channel.value} channel needs it",
                    )
    objection_template = objection.template if objection else None
    objection_dir = project.templates / (objection_template or "")
    if objection_template is None:
        pass
    elif not objection_dir.is_dir():
        problem(("objection", "template"), f"template folder {objection_dir} does not exist")
    else:
        needed = [*OBJECTION_PAGE_FILES, *TEMPLATE_FILES[Channel.INAPP]]
        if Channel.EMAIL in sending:
            needed += TEMPLATE_FILES[Channel.EMAIL]
        for name in needed:
            if not (objection_dir / name).is_file():
                problem(("objection", "template"), f"{objection_dir / name} is missing")
    locales: Locales | None = parts.get("locales")
    glossary = project.locales / locales.glossary if locales and locales.glossary else None
    if glossary and not glossary.resolve().is_relative_to(project.locales.resolve()):
        # the campaign is bound to locales/ (specs.spec_files): a glossary elsewhere could
        # change after validation with nothing to show it
        problem(("locales", "glossary"), f"must be a file under {project.locales}/")
    elif glossary and not glossary.is_file():
        problem(("locales", "glossary"), f"glossary file {glossary} does not exist")
    return out


def _lead_checks(
    sched: Schedule, policy: Policy, located: LocatedYaml, launched: bool
) -> list[Problem]:
    """Everyone is told before the change, and with at least policy.min_lead_days (a
    rule since commit 285c025: a campaign launched before it keeps its schedule)."""
    effective = dt.datetime.combine(policy.effective_date, dt.time(0), dt.UTC)
    if sched.deadline >= effective:
        return [
            located.problem(
                ("schedule", "deadline"),
                f"must be before policy.effective_date ({policy.effective_date}): "
                "everyone must be told before the change takes effect",
            )
        ]
    latest = effective - dt.timedelta(days=policy.min_lead_days)
    if sched.deadline > latest:
        lead = effective - sched.deadline
        return [
            located.problem(
                ("schedule", "deadline"),
                f"a user notified at the deadline would get {_days(lead)} of lead; "
                f"policy.min_lead_days promises every recipient {policy.min_lead_days}, "
                f"so the deadline may be at most {latest.isoformat().replace('+00:00', 'Z')}",
                severity="warning" if launched else "error",
            )
        ]
    return []


def _days(span: dt.timedelta) -> str:
    days = span.total_seconds() / 86400
    return f"{days:g} day{'' if days == 1 else 's'}" if days == int(days) else f"{days:.1f} days"
