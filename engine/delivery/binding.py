"""What the evidence says about a campaign before any message: `started` and `audience`
event data (docs/evidence.md). Pure: no I/O.

`started` binds the log to the exact campaign: its files' hashes, the policy it announces
and the rule that picks its audience, so no later report can claim another notice.
`audience` records, for each plan pass, who was considered and why each one left out was.
"""

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from engine import __version__
from engine.authoring.campaigns import Campaign
from engine.authoring.regions import region_data
from engine.canonical import FORMAT
from engine.models import SpecFile
from engine.store.events import iso

# Why planning leaves out a user of the campaign's countries (docs/evidence.md §3.2).
OBJECTED = "objected"  # objected to the purpose already (audience.include_objected: false)
JOINED_LATE = "joined_after_effective_date"  # new after schedule.plan_until, on a later pass


def started_data(c: Campaign, files: Sequence[SpecFile], spec_sha256: str) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "herald": __version__,
        "title": c.title,
        "spec_sha256": spec_sha256,
        "files": {f.path: f.sha256 for f in files},
        "policy": {
            "version": c.policy.version,
            "purpose": c.policy.purpose,
            "effective_date": c.policy.effective_date.isoformat(),
            "min_lead_days": c.policy.min_lead_days,
            "controller": c.policy.controller,
            "legal_basis": c.policy.legal_basis,
            "url": c.policy.url,
        },
        "schedule": {
            "start": iso(c.schedule.start.timestamp()),
            "deadline": iso(c.schedule.deadline.timestamp()),
        },
        "audience": {
            "regions": list(c.audience.regions),
            "exclude_countries": list(c.audience.exclude_countries),
            "countries": sorted(c.countries),
            "channels": [ch.value for ch in c.channels],
            "fallback": c.fallback.value if c.fallback else None,
            "include_objected": c.audience.include_objected,
            "plan_until": iso(c.plan_until),
        },
    }


def audience_data(
    c: Campaign,
    users_by_country: Mapping[str, int],
    targeted: Counter[str],
    left_out: Mapping[str, Counter[str]] | None = None,
) -> dict[str, Any]:
    """One plan pass: every user considered, counted per country as targeted or excluded
    with its reason. `left_out` holds the users of the campaign's countries that planning
    excluded, per country and reason (OBJECTED, JOINED_LATE); the others not targeted are
    outside the audience's countries, or were imported or moved while the pass ran."""
    data = region_data()
    excluded_codes = {data.country_code(code) for code in c.audience.exclude_countries}
    left_out = left_out or {}
    by_country: dict[str, dict[str, Any]] = {}
    excluded: Counter[str] = Counter()
    for country, count in sorted(users_by_country.items()):
        reasons = Counter({k: v for k, v in left_out.get(country, Counter()).items() if v})
        left = count - targeted[country] - sum(reasons.values())
        entry: dict[str, Any] = {"considered": count, "targeted": targeted[country]}
        if left > 0:
            reason = "excluded_country" if country in excluded_codes else "outside_regions"
            if country in c.countries:
                reason = "changed_during_plan"  # imported or moved while the pass ran
            reasons[reason] += left
        if reasons:
            entry["excluded"] = dict(sorted(reasons.items()))
            excluded.update(reasons)
        by_country[country] = entry
    return {
        "considered": sum(users_by_country.values()),
        "targeted": sum(targeted.values()),
        "excluded": dict(sorted(excluded.items())),
        "by_country": by_country,
    }
