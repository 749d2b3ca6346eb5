"""`herald plan`: one delivery per targeted user and channel. I/O: via the store.

Idempotent: rerunning adds only users who newly match (the unique key campaign + user
+ channel makes a duplicate impossible even with two planners at once). Streams users
in id order, a batch at a time, so memory stays flat as the audience grows.
"""

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine

from engine.authoring.campaigns import Campaign, LoadedCampaign
from engine.authoring.i18n import Catalogs
from engine.authoring.regions import region_data
from engine.authoring.specs import spec_files, spec_hash
from engine.delivery.binding import JOINED_LATE, OBJECTED, audience_data, started_data
from engine.delivery.tokens import Keys
from engine.delivery.windows import SendTimes
from engine.models import LocaleChoice
from engine.statuses import DeliveryStatus
from engine.store import campaigns as campaign_store
from engine.store import writing
from engine.store.events import append_events, iso
from engine.store.objections import objections_of
from engine.store.planned import insert_planned
from engine.store.users import iter_users, planned_users, users_by_country


@dataclass
class PlanResult:
    in_audience: int = 0  # users who match the audience now (README: not "targeted")
    new_deliveries: int = 0  # created by this run
    by_country: Counter[str] = field(default_factory=Counter)
    by_channel: Counter[str] = field(default_factory=Counter)
    by_region: Counter[str] = field(default_factory=Counter)
    left_out: dict[str, Counter[str]] = field(default_factory=dict)  # country: reason: users
    spec_changed: bool = False  # the files differ from those the campaign was launched with
    stopped: bool = False  # asked to stop before the last batch; rerunning finishes it


def plan_campaign(
    engine: Engine,
    loaded: LoadedCampaign,
    keys: Keys,
    now: float | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> PlanResult:
    """Launch the campaign (its spec is fixed from here) and plan every targeted user.

    Each delivery's first attempt is the campaign's start, moved to the next opening of
    the send window in the user's time zone, so the claim never computes time zones."""
    c = loaded.campaign
    now = time.time() if now is None else now
    result = PlanResult()
    files = spec_files(loaded)
    digest = spec_hash(files)
    launch = campaign_store.launch(
        engine, c.record, digest, files, now, started_data(c, files, digest)
    )
    if not launch.same_spec:  # the caller refuses; a launched campaign keeps its spec
        result.spec_changed = True
        return result
    # The first pass (until it completes) plans everyone; later ones add no one new
    # once the clock passes plan_until.
    closed = launch.started and now >= c.plan_until and _completed_once(engine, c.id)
    times = SendTimes(c.schedule.send_window)
    first = max(now, c.schedule.start.timestamp())
    catalogs = Catalogs(loaded.project.locales)
    choices: dict[tuple[str | None, str], LocaleChoice] = {}
    regions = {name: region_data().expand(name) or frozenset() for name in c.audience.regions}
    at = iso(now)
    channels = [(channel, channel.value) for channel in c.channels]
    pending = DeliveryStatus.PENDING.value  # Enum .value is a property: not once per row
    for users in iter_users(engine, c.countries):
        if should_stop():
            result.stopped = True
            return result
        rows = []
        left_out = _left_out(engine, c, users, closed)
        for user in users:
            if user["id"] in left_out:
                reasons = result.left_out.setdefault(user["country"], Counter())
                reasons[left_out[user["id"]]] += 1
                continue
            key = (user["locale"], user["country"])
            if key not in choices:
                choices[key] = catalogs.choose(user["locale"], user["country"], c.locales.default)
            choice = choices[key]
            token_id = keys.token_id(c.id, user["id"])
            for channel, name in channels:
                due = times.next_allowed(first, channel, user["timezone"], user["country"])
                rows.append(
                    {
                        "campaign_id": c.id,
                        "user_id": user["id"],
                        "channel": name,
                        "country": user["country"],
                        "locale": choice.locale,
                        "locale_source": choice.source.value,
                        "fell_back": choice.fell_back,
                        "token_id": token_id,
                        "status": pending,
                        "next_attempt_at": due,
                    }
                )
            result.in_audience += 1
            result.by_country[user["country"]] += 1
            for name, members in regions.items():
                if user["country"] in members:
                    result.by_region[name] += 1
        with writing(engine) as conn:
            inserted = insert_planned(conn, rows)
            append_events(
                conn,
                c.id,
                [
                    {
                        "kind": "planned",
                        "at": at,
                        "delivery_id": row["id"],
                        "user_id": row["user_id"],
                        "channel": row["channel"],
                        "data": {
                            "country": row["country"],
                            "locale": row["locale"],
                            "locale_source": row["locale_source"],
                            "fell_back": row["fell_back"],
                        },
                    }
                    for row in inserted
                ],
            )
        result.new_deliveries += len(inserted)
        for row in rows:
            result.by_channel[row["channel"]] += 1
    with writing(engine) as conn:
        considered = users_by_country(conn)
        data = audience_data(c, considered, result.by_country, result.left_out)
        append_events(conn, c.id, [{"kind": "audience", "at": at, "data": data}])
    campaign_store.set_state(engine, c.id, "planned")
    return result


def _completed_once(engine: Engine, campaign_id: str) -> bool:
    row = campaign_store.get(engine, campaign_id)
    return row is not None and row["state"] != "planning"


def _left_out(
    engine: Engine, c: Campaign, users: Sequence[dict[str, Any]], closed: bool
) -> dict[str, str]:
    """The batch's users who are not planned, with the reason (one query or two a batch).

    A user already planned stays planned: leaving them out would not unsend the notice.
    Otherwise an objector to the campaign's purpose is left out (unless
    audience.include_objected), and so is anyone new once planning has closed."""
    ids = [user["id"] for user in users]
    objectors = {} if c.audience.include_objected else objections_of(engine, ids, c.policy.purpose)
    if not objectors and not closed:
        return {}
    planned = planned_users(engine, c.id, ids)
    reasons = dict.fromkeys(set(objectors) - planned, OBJECTED)
    if closed:
        reasons |= {i: JOINED_LATE for i in ids if i not in planned and i not in reasons}
    return reasons
