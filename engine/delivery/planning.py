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
from engine.errors import CampaignError, Problem
from engine.models import Channel, LocaleChoice
from engine.statuses import DeliveryStatus
from engine.store import campaigns as campaign_store
from engine.store import writing
from engine.store.events import append_events, iso
from engine.store.objections import objections_of
from engine.store.planned import insert_planned
from engine.store.users import iter_users, planned_users, users_by_country

# Users planned per transaction. Each commit writes every page it dirtied to the WAL, and
# the subject indexes take random keys, so small transactions rewrite the same pages
# over and over: 4,000 instead of 1,000 took plan's system time from 2.2 s to 1.4 s and
# its wall time from ~17 s to ~14 s at 100,000 users, for ~7 MB more peak memory. The
# write lock is held ~0.2 s a batch.
USERS_PER_TRANSACTION = 4000


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
    validated: str | None = None,
) -> PlanResult:
    """Launch the campaign (its spec is fixed from here) and plan every targeted user.
    `validated`: the spec hash the campaign was validated at; files that no longer hash
    to it are not launched (CampaignError), since what was checked is not what would go.

    Each delivery's first attempt is the campaign's start, moved to the next opening of
    the send window in the user's time zone, so the claim never computes time zones."""
    c = loaded.campaign
    now = time.time() if now is None else now
    result = PlanResult()
    files = spec_files(loaded)
    digest = spec_hash(files)
    if validated is not None and digest != validated:
        raise CampaignError(
            [
                Problem(
                    loaded.path,
                    "the campaign's files changed while it was being validated; nothing was "
                    "launched: run it again",
                )
            ]
        )
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
    # A first attempt depends only on the channel, the user's zone and country (`first`
    # is fixed for the run): once per combination, not once per delivery.
    due_at: dict[tuple[Channel, str | None, str], float] = {}
    at = iso(now)
    channels = [(channel, channel.value) for channel in c.channels]
    pending = DeliveryStatus.PENDING.value  # Enum .value is a property: not once per row
    try:
        for users in iter_users(engine, c.countries, USERS_PER_TRANSACTION):
            if should_stop():
                result.stopped = True
                return result
            rows = []
            left_out = _left_out(engine, c, users, closed)
            for user in users:
                user_id, country = user["id"], user["country"]
                if user_id in left_out:
                    reasons = result.left_out.setdefault(country, Counter())
                    reasons[left_out[user_id]] += 1
                    continue
                key = (user["locale"], country)
                choice = choices.get(key)
                if choice is None:
                    choice = choices[key] = catalogs.choose(key[0], country, c.locales.default)
                token_id = keys.token_id(c.id, user_id)
                for channel, name in channels:
                    when = (channel, user["timezone"], country)
                    due = due_at.get(when)
                    if due is None:
                        due = due_at[when] = times.next_allowed(first, *when)
                    rows.append(
                        {
                            "campaign_id": c.id,
                            "user_id": user_id,
                            "channel": name,
                            "country": country,
                            "locale": choice.locale,
                            "locale_source": choice.source.value,
                            "fell_back": choice.fell_back,
                            "token_id": token_id,
                            "status": pending,
                            "next_attempt_at": due,
                        }
                    )
                result.by_country[country] += 1
            with writing(engine) as conn:
                inserted = insert_planned(conn, rows)
                append_events(conn, c.id, [_planned_event(row, at) for row in inserted])
            result.new_deliveries += len(inserted)
            for _, name in channels:  # every user planned gets every channel
                result.by_channel[name] += len(rows) // len(channels)
    finally:
        result.in_audience = result.by_country.total()
        result.by_region = _by_region(c, result.by_country)
    with writing(engine) as conn:
        considered = users_by_country(conn)
        data = audience_data(c, considered, result.by_country, result.left_out)
        append_events(conn, c.id, [{"kind": "audience", "at": at, "data": data}])
    campaign_store.set_state(engine, c.id, "planned")
    return result


def _planned_event(row: dict[str, Any], at: str) -> dict[str, Any]:
    return {
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


def _by_region(c: Campaign, by_country: Counter[str]) -> Counter[str]:
    """Users in the audience per region the audience names, from the per-country counts
    (a region is a set of countries: counted once at the end, not once per user)."""
    counts: Counter[str] = Counter()
    for name in c.audience.regions:
        members = region_data().expand(name) or frozenset()
        total = sum(n for country, n in by_country.items() if country in members)
        if total:
            counts[name] = total
    return counts


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
