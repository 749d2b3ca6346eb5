"""The coverage report as one self-contained HTML page, for a DPO to read, forward and
print. Pure: report dict (evidence.report) in, HTML text out.

No script, no style sheet, image or font from elsewhere: the CSS and the SVG charts are
inline, so the page reads the same offline, in a mail client and in an evidence pack.
Every figure of the JSON report is on the page as <data value="…" data-figure="/json/
pointer">, so a reader (or a test) can match each number to `report --format json`.
"""

import datetime as dt
import json
from collections.abc import Iterator, Mapping
from typing import Any

import jinja2
from babel import Locale, UnknownLocaleError
from markupsafe import Markup

from engine.evidence import charts

_env = jinja2.Environment(
    loader=jinja2.PackageLoader("engine", "data"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_ENGLISH = Locale("en")
_STATUSES = ("sent", "delivered", "sending", "pending", "deferred", "bounced", "failed")


def render_report_html(
    report: Mapping[str, Any],
    verdict: Mapping[str, Any] | None = None,
    generated_at: dt.datetime | None = None,
) -> str:
    """The page for `report`. `verdict` is the evidence check, {"verified": bool | None,
    "key_fingerprint": str | None, "checked_at": str | None}; None (or verified None)
    means not checked, which the page says plainly."""
    figures = _Figures(report)
    deadline = dt.datetime.fromisoformat(report["deadline"])
    effective = dt.date.fromisoformat(report["effective_date"])
    markers = [charts.Marker("deadline", deadline.date()), charts.Marker("effective", effective)]
    over = report["over_time"]
    channels = sorted(over["notices_by_channel"])
    return _env.get_template("report.html").render(
        r=report,
        fig=figures,
        share=_share(report["targeted"]),
        verdict=verdict or {},
        generated_at=generated_at,
        deadline=deadline,
        statuses=_statuses(report["channels"]),
        names={"by_country": _country, "by_locale": _language},
        charts=_charts(report, markers),
        notified_days=_days(over["users_notified"], *over["notices_by_channel"].values()),
        notice_channels=channels,
        engagement_days=_days(over["seen"], over["objected"]),
        duration=format_duration,
    )


def _charts(report: Mapping[str, Any], markers: list[charts.Marker]) -> dict[str, Markup]:
    over = report["over_time"]
    targeted = report["targeted"]

    def per_day(counts: Mapping[str, int]) -> dict[dt.date, int]:
        return {dt.date.fromisoformat(d): n for d, n in counts.items()}

    found = {
        "notified": charts.timeline(
            "chart-notified",
            "Users notified over time",
            f"Running total of users notified, reaching {report['notified']:,} of "
            f"{targeted:,} targeted; {report['notified_before_deadline']:,} before the "
            f"deadline ({markers[0].day}) and {report['notified_before_effective_date']:,} "
            f"before the effective date ({markers[1].day}). Notices per channel are dashed. "
            "The table below gives the counts per day.",
            [charts.Line("users notified", per_day(over["users_notified"]))]
            + [
                charts.Line(ch, per_day(days), dashed=True)
                for ch, days in sorted(over["notices_by_channel"].items())
            ],
            markers,
            ("targeted", targeted),
        ),
        "engagement": charts.timeline(
            "chart-engagement",
            "Seen and objected over time",
            f"Running totals: {report['seen']:,} users saw their in-app notice and "
            f"{report['objected']:,} objected. The table below gives the counts per day.",
            [
                charts.Line("seen", per_day(over["seen"])),
                charts.Line("objected", per_day(over["objected"])),
            ],
            markers[1:],
        ),
        "channels": charts.bars(
            "chart-channels",
            "Deliveries by channel and status",
            "; ".join(
                f"{ch}: " + ", ".join(f"{n:,} {s}" for s, n in counts.items() if n)
                for ch, counts in sorted(report["channels"].items())
            )
            or "No deliveries yet.",
            [
                charts.Bar(ch, tuple((s, counts.get(s, 0)) for s in _statuses(report["channels"])))
                for ch, counts in sorted(report["channels"].items())
            ],
        ),
        "failures": charts.bars(
            "chart-failures",
            "Failures by reason",
            "; ".join(
                f"{f['channel']}, {f['reason'] or 'no reason given'}: {f['count']:,}"
                for f in report["failure_reasons"]
            ),
            [
                charts.Bar(f"{f['channel']}: {f['reason'] or '(none)'}", (("failed", f["count"]),))
                for f in report["failure_reasons"]
            ],
        ),
    }
    for key, name, noun in (
        ("by_country", _country, "country"),
        ("by_locale", _language, "locale"),
    ):
        rows = report[key]
        found[key] = charts.bars(
            f"chart-{key}",
            f"Coverage by {noun}",
            f"Users notified, failed and pending in each {noun}"
            + (
                ", with the users who fell back to another locale noted"
                if key == "by_locale"
                else ""
            )
            + ": "
            + "; ".join(
                f"{name(k)}: {v['notified']:,} of {v['targeted']:,} notified"
                + (
                    f", {v['fell_back']:,} fell back"
                    if key == "by_locale" and v["fell_back"]
                    else ""
                )
                for k, v in rows.items()
            )
            + ".",
            [
                charts.Bar(
                    f"{name(k)} ({k})" if name(k) != k else k,
                    tuple((b, v[b]) for b in ("notified", "failed", "pending")),
                    f"↩ {v['fell_back']:,} fell back to it"
                    if key == "by_locale" and v["fell_back"]
                    else "",
                )
                for k, v in rows.items()
            ],
        )
    return found


class _Figures:
    """Shows a figure of the report as <data>, and remembers which ones it showed so that
    `rest()` can list every figure that no section of the page has shown."""

    def __init__(self, report: Mapping[str, Any]) -> None:
        self.report, self.shown = report, set[str]()

    def __call__(self, *path: str | int, text: str | None = None) -> Markup:
        value: Any = self.report
        for step in path:
            value = value[step]
        pointer = _pointer(path)
        self.shown.add(pointer)
        return Markup('<data value="{}" data-figure="{}">{}</data>').format(
            json.dumps(value), pointer, _number(value) if text is None else text
        )

    def rest(self) -> list[tuple[str, Markup]]:
        """(a label, the figure) for each figure not shown yet, in the report's order."""
        return [
            (" › ".join(str(p).replace("_", " ") for p in path), self(*path))
            for path in _leaves(self.report, ())
            if _pointer(path) not in self.shown
        ]


def _leaves(value: Any, path: tuple[str | int, ...]) -> Iterator[tuple[str | int, ...]]:
    """The path of every number and yes/no in `value`."""
    if isinstance(value, Mapping):
        for key, inner in value.items():
            yield from _leaves(inner, (*path, key))
    elif isinstance(value, list):
        for i, inner in enumerate(value):
            yield from _leaves(inner, (*path, i))
    elif isinstance(value, int | float | bool):
        yield path


def _pointer(path: tuple[str | int, ...]) -> str:
    """An RFC 6901 JSON pointer."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in path)


def _number(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.1f}" if isinstance(value, float) else str(value)


def _share(targeted: int) -> Any:
    def share(n: int) -> str:
        return f"{100 * n / targeted:.1f}%" if targeted else "–"

    return share


def _statuses(channels: Mapping[str, Mapping[str, int]]) -> list[str]:
    present = {s for counts in channels.values() for s in counts}
    return [s for s in _STATUSES if s in present] + sorted(present - set(_STATUSES))


def _days(*series: Mapping[str, int]) -> list[str]:
    return sorted({day for counts in series for day in counts})


def _country(code: str) -> str:
    return str(_ENGLISH.territories.get(code, code))


def _language(code: str) -> str:
    try:
        return str(Locale.parse(code).get_display_name(_ENGLISH) or code)
    except (UnknownLocaleError, ValueError):
        return code


_UNITS = (("d", 86400), ("h", 3600), ("min", 60), ("s", 1))


def format_duration(seconds: float | None) -> str:
    """The two largest units, e.g. 2 h 5 min (a remainder below them is dropped);
    "none" for None."""
    if seconds is None:
        return "none"
    left = round(abs(seconds))
    values = []
    for name, size in _UNITS:
        n, left = divmod(left, size)
        values.append((n, name))
    first = next((i for i, (n, _) in enumerate(values) if n), len(values) - 1)
    shown = " ".join(f"{n} {name}" for n, name in values[first : first + 2] if n) or "0 s"
    return f"-{shown}" if seconds < 0 and shown != "0 s" else shown
