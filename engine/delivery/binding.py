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
        },
    }


def audience_data(
    c: Campaign, users_by_country: Mapping[str, int], targeted: Counter[str]
) -> dict[str, Any]:
    """One plan pass: every user considered, counted per country as targeted or excluded
    with its reason."""
    data = region_data()
    excluded_codes = {data.country_code(code) for code in c.audience.exclude_countries}
    by_country: dict[str, dict[str, Any]] = {}
    excluded: Counter[str] = Counter()
    for country, count in sorted(users_by_country.items()):
        left = count - targeted[country]
        entry: dict[str, Any] = {"considered": count, "targeted": targeted[country]}
        if left:
            reason = "excluded_country" if country in excluded_codes else "outside_regions"
            if country in c.countries:
                reason = "changed_during_plan"  # imported or moved while the pass ran
            entry["excluded"] = {reason: left}
            excluded[reason] += left
        by_country[country] = entry
    return {
        "considered": sum(users_by_country.values()),
        "targeted": sum(targeted.values()),
        "excluded": dict(sorted(excluded.items())),
        "by_country": by_country,
    }
