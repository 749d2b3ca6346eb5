"""The report's figures, derived from events alone (docs/evidence.md §8). Pure: no I/O.

An auditor with an evidence pack needs no database: feeding every event of a campaign
through `Derivation` gives the same coverage figures the report computed from tables,
and each subject's final status per channel, to hold `recipients.jsonl` against.
"""

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

FINAL = {"sent", "delivered", "failed", "bounced"}  # a delivery's last word
NOTIFIED = {"sent", "delivered"}
STATUS = {"planned", "deferred", *FINAL}


@dataclass(slots=True)
class _Delivery:
    subject: str
    channel: str
    notice: bool
    country: str
    locale: str
    fell_back: bool
    status: str = "planned"
    at: str | None = None  # when it reached its status
    first_notified: str | None = None
    message_id: str | None = None
    content_sha256: str | None = None
    possible_duplicate: bool = False  # its send followed an attempt of unknown outcome


@dataclass
class Derivation:
    deliveries: dict[int, _Delivery] = field(default_factory=dict)
    seen: int = 0
    objected: int = 0
    started: dict[str, Any] = field(default_factory=dict)

    def feed(self, record: Mapping[str, Any]) -> None:
        kind, data = record["kind"], record["data"]
        if kind == "started":
            self.started = dict(data)
        elif kind == "seen":
            self.seen += 1
        elif kind == "objected":
            self.objected += 1
        if kind not in STATUS or record["delivery"] is None:
            return
        if kind == "planned":
            self.deliveries[record["delivery"]] = _Delivery(
                record["subject"],
                record["channel"],
                data.get("message") != "confirmation",
                str(data.get("country", "")),
                str(data.get("locale", "")),
                bool(data.get("fell_back")),
            )
            return
        delivery = self.deliveries.get(record["delivery"])
        if delivery is None:
            raise ValueError(f"seq {record['seq']}: `{kind}` for a delivery never planned")
        delivery.status, delivery.at = kind, record["at"]
        if kind in NOTIFIED:
            delivery.first_notified = delivery.first_notified or record["at"]
            delivery.message_id = data.get("message_id")
            delivery.content_sha256 = data.get("content_sha256")
            delivery.possible_duplicate = data.get("possible_duplicate") is True

    def recipients(self) -> dict[str, dict[str, Any]]:
        """Per subject: country, locale, and per channel the notice's final status."""
        found: dict[str, dict[str, Any]] = {}
        for d in self.deliveries.values():
            if not d.notice:
                continue
            entry = found.setdefault(
                d.subject, {"country": d.country, "locale": d.locale, "channels": {}}
            )
            entry["country"] = max(entry["country"], d.country)
            entry["locale"] = max(entry["locale"], d.locale)
            notified = d.status in NOTIFIED
            entry["channels"][d.channel] = {
                "status": d.status if d.status in FINAL else "open",
                "at": d.first_notified if notified else None,
                "message_id": d.message_id if notified else None,
                "content_sha256": d.content_sha256 if notified else None,
            }
        return found

    def figures(self) -> dict[str, Any]:
        """The report's figures that events decide (docs/evidence.md §8)."""
        deadline = str(self.started.get("schedule", {}).get("deadline", ""))
        effective = str(self.started.get("policy", {}).get("effective_date", ""))
        per_subject: dict[str, dict[str, Any]] = {}
        channels: dict[str, Counter[str]] = {}
        duplicates = 0
        for d in self.deliveries.values():
            if not d.notice:
                continue
            status = d.status if d.status in FINAL else "open"
            channels.setdefault(d.channel, Counter())[status] += 1
            duplicates += d.status in NOTIFIED and d.possible_duplicate
            s = per_subject.setdefault(
                d.subject,
                {
                    "country": "",
                    "locale": "",
                    "fell_back": False,
                    "notified": False,
                    "final": True,
                    "first": None,
                },  # fmt: skip
            )
            s["country"], s["locale"] = max(s["country"], d.country), max(s["locale"], d.locale)
            s["fell_back"] |= d.fell_back
            s["notified"] |= d.status in NOTIFIED
            s["final"] &= d.status in FINAL
            if d.first_notified and (s["first"] is None or d.first_notified < s["first"]):
                s["first"] = d.first_notified
        totals: Counter[str] = Counter()
        by_country: dict[str, Counter[str]] = {}
        by_locale: dict[str, Counter[str]] = {}
        for s in per_subject.values():
            outcome = "notified" if s["notified"] else "failed" if s["final"] else "pending"
            for counter in (
                totals,
                by_country.setdefault(s["country"], Counter()),
                by_locale.setdefault(s["locale"], Counter()),
            ):
                counter["targeted"] += 1
                counter[outcome] += 1
            totals["fell_back_locale"] += s["fell_back"]
            if s["first"] and s["first"] < _day_start(effective):
                totals["notified_before_effective_date"] += 1
            if s["first"] and s["first"] < _normal(deadline):
                totals["notified_before_deadline"] += 1
        keys = ("targeted", "notified", "failed", "pending")
        return {
            **{k: totals[k] for k in keys},
            "notified_before_deadline": totals["notified_before_deadline"],
            "notified_before_effective_date": totals["notified_before_effective_date"],
            "fell_back_locale": totals["fell_back_locale"],
            "possible_duplicates": duplicates,
            "seen": self.seen,
            "objected": self.objected,
            "channels": {c: dict(sorted(n.items())) for c, n in sorted(channels.items())},
            "by_country": {c: {k: n[k] for k in keys} for c, n in sorted(by_country.items())},
            "by_locale": {c: {k: n[k] for k in keys} for c, n in sorted(by_locale.items())},
        }


def report_figures(report: Mapping[str, Any]) -> dict[str, Any]:
    """The same figures, as `herald report --format json` states them."""
    keys = ("targeted", "notified", "failed", "pending")

    def table(rows: Mapping[str, Mapping[str, int]]) -> dict[str, dict[str, int]]:
        return {k: {f: int(v[f]) for f in keys} for k, v in sorted(rows.items()) if v["targeted"]}

    channels = {}
    for channel, counts in sorted(report["channels"].items()):
        folded: Counter[str] = Counter()
        for status, n in counts.items():
            if n:
                folded[status if status in FINAL else "open"] += n
        channels[channel] = dict(sorted(folded.items()))
    return {
        **{k: int(report[k]) for k in keys},
        "notified_before_deadline": int(report["notified_before_deadline"]),
        "notified_before_effective_date": int(report["notified_before_effective_date"]),
        "fell_back_locale": int(report["fell_back_locale"]),
        "possible_duplicates": int(report["possible_duplicates"]),
        "seen": int(report["seen"]),
        "objected": int(report["objected"]),
        "channels": {c: n for c, n in channels.items() if n},
        "by_country": table(report["by_country"]),
        "by_locale": table(report["by_locale"]),
    }


def differences(
    derived: Mapping[str, Any], stated: Mapping[str, Any], path: str = ""
) -> list[tuple[str, Any, Any]]:
    """(figure path, derived, stated) wherever the two disagree."""
    found: list[tuple[str, Any, Any]] = []
    for key in sorted(set(derived) | set(stated)):
        a, b = derived.get(key), stated.get(key)
        where = f"{path}/{key}"
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            found += differences(a, b, where)
        elif a != b:
            found.append((where, a, b))
    return found


def _normal(iso: str) -> str:
    """A deadline as events write times (…T00:00:00.000Z), so strings compare as times."""
    if not iso:
        return "~"
    head = iso.replace("Z", "").replace("+00:00", "")
    if "." not in head:
        head += ".000"
    return head + "Z"


def _day_start(date: str) -> str:
    return f"{date}T00:00:00.000Z" if date else "~"
