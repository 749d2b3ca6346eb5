"""SVG charts for the HTML report: stacked bars and cumulative lines over days. Pure.

Each chart is one inline <svg role="img"> named by its <title> and described by its <desc>,
so a screen reader hears a sentence; the page puts the figures in a table beside it. Every
text passes through markupsafe's escape, so a label can never become markup.
"""

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from markupsafe import Markup, escape

WIDTH = 720
TEXT = "#1f2937"  # dark grey: 4.5:1 and more on white, also for small print
GRID = "#d1d5db"
# Okabe and Ito's palette: told apart with every common colour-vision deficiency.
COLOURS = {
    "notified": "#0072B2",
    "sent": "#0072B2",
    "delivered": "#56B4E9",
    "failed": "#D55E00",
    "bounced": "#CC79A7",
    "deferred": "#E69F00",
    "pending": "#9ca3af",
    "sending": "#F0E442",
    "email": "#0072B2",
    "inapp": "#009E73",
    "seen": "#009E73",
    "objected": "#D55E00",
    "users notified": "#000000",
}
_OTHER = "#6b7280"


@dataclass(frozen=True)
class Bar:
    """One row of a stacked bar chart: its parts in legend order, and a note after it."""

    label: str
    parts: tuple[tuple[str, int], ...]
    note: str = ""


@dataclass(frozen=True)
class Line:
    """Counts per day, drawn as a running total."""

    name: str
    per_day: Mapping[dt.date, int]
    dashed: bool = False


@dataclass(frozen=True)
class Marker:
    """A vertical rule at the start of `day`: a deadline, an effective date."""

    label: str
    day: dt.date


def colour(name: str) -> str:
    return COLOURS.get(name, _OTHER)


def _svg(chart_id: str, title: str, desc: str, height: int, body: Iterable[str]) -> Markup:
    head = Markup(
        '<svg xmlns="http://www.w3.org/2000/svg" role="img" viewBox="0 0 {w} {h}" '
        'width="{w}" height="{h}" aria-labelledby="{i}-title {i}-desc" class="chart" '
        'font-family="inherit" font-size="12">'
        '<title id="{i}-title">{t}</title><desc id="{i}-desc">{d}</desc>'
    ).format(w=WIDTH, h=height, i=chart_id, t=title, d=desc)
    return head + Markup("".join(body)) + Markup("</svg>")


def _text(x: float, y: float, text: str, anchor: str = "start", weight: str = "") -> str:
    bold = ' font-weight="bold"' if weight else ""
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" fill="{TEXT}" text-anchor="{anchor}"{bold}>'
        f"{escape(text)}</text>"
    )


def _legend(names: Iterable[str], y: float, x: float = 0) -> list[str]:
    out = []
    for name in names:
        out.append(
            f'<rect x="{x:.1f}" y="{y - 10:.1f}" width="12" height="12" fill="{colour(name)}"/>'
        )
        out.append(_text(x + 16, y, name))
        x += 28 + 7 * len(name)
    return out


def bars(chart_id: str, title: str, desc: str, rows: list[Bar]) -> Markup:
    """Horizontal stacked bars, one per row, on one scale; a legend of the parts above."""
    labels = [r.label if len(r.label) <= 40 else r.label[:39] + "…" for r in rows]
    # About 7 units a character at this size; the bars get what the labels leave.
    label_w = min(7 * max(map(len, labels), default=0) + 8, 290)
    left, right, row_h = label_w + 6, WIDTH - 130, 22
    names = [n for n in dict.fromkeys(n for r in rows for n, _ in r.parts) if _used(n, rows)]
    top = 30
    height = top + row_h * len(rows) + 6
    scale = max((sum(v for _, v in r.parts) for r in rows), default=0) or 1
    out = _legend(names, 14)
    for i, row in enumerate(rows):
        y = top + i * row_h
        out.append(_text(label_w, y + 12, labels[i], "end"))
        x = float(left)
        for name, value in row.parts:
            width = (right - left) * value / scale
            if width > 0:
                out.append(
                    f'<rect x="{x:.1f}" y="{y + 1}" width="{width:.1f}" height="15" '
                    f'fill="{colour(name)}"/>'
                )
            x += width
        total = sum(v for _, v in row.parts)
        out.append(_text(x + 6, y + 12, f"{total:,}" + (f"  {row.note}" if row.note else "")))
    return _svg(chart_id, title, desc, height, out)


def _stroke(line: Line) -> str:
    dash = ' stroke-dasharray="5 3"' if line.dashed else ""
    return f' stroke="{colour(line.name)}" stroke-width="2.5"{dash}'


def _used(name: str, rows: list[Bar]) -> bool:
    return any(v for r in rows for n, v in r.parts if n == name)


def timeline(
    chart_id: str,
    title: str,
    desc: str,
    lines: list[Line],
    markers: list[Marker],
    ceiling: tuple[str, int] | None = None,
) -> Markup:
    """Running totals per day as steps, with vertical markers and an optional horizontal
    ceiling (the users targeted). The days run from the first to the last of all of them."""
    days = [d for line in lines for d in line.per_day] + [m.day for m in markers]
    first = min(days, default=dt.date(1970, 1, 1))
    last = max(days, default=first) + dt.timedelta(days=1)
    span = (last - first).days or 1
    # Each marker's label has a row of its own above the plot, so that two close dates
    # (a deadline two weeks before the effective date) never overlap; then room for the
    # ceiling's label.
    x0, x1, top = 64.0, WIDTH - 16.0, 16.0 * len(markers) + 30
    bottom = top + 190

    def x(day: dt.date) -> float:
        return x0 + (x1 - x0) * (day - first).days / span

    totals = [sum(line.per_day.values()) for line in lines]
    peak = max([*totals, ceiling[1] if ceiling else 0, 1])

    def y(value: float) -> float:
        return bottom - (bottom - top) * value / peak

    out = []
    for tick in sorted({0, peak // 2, peak}):
        out.append(
            f'<line x1="{x0}" x2="{x1}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" stroke="{GRID}"/>'
        )
        out.append(_text(x0 - 6, y(tick) + 4, f"{tick:,}", "end"))
    out.append(_text(x0, bottom + 18, first.isoformat()))
    out.append(_text(x1, bottom + 18, (last - dt.timedelta(days=1)).isoformat(), "end"))
    if ceiling:
        label, value = ceiling
        out.append(
            f'<line x1="{x0}" x2="{x1}" y1="{y(value):.1f}" y2="{y(value):.1f}" '
            f'stroke="{TEXT}" stroke-dasharray="2 3"/>'
        )
        out.append(_text(x0 + 4, y(value) - 4, f"{label}: {value:,}"))
    for i, marker in enumerate(markers):
        mx = x(marker.day)
        out.append(
            f'<line x1="{mx:.1f}" x2="{mx:.1f}" y1="{16 * i + 4}" '
            f'y2="{bottom}" stroke="{TEXT}" stroke-dasharray="6 3"/>'
        )
        anchor = "end" if mx > (x0 + x1) / 2 else "start"
        shift = -4 if anchor == "end" else 4
        label = f"{marker.label} {marker.day.isoformat()}"
        out.append(_text(mx + shift, 16 * i + 14, label, anchor))
    for line in lines:
        path, running = [f"M{x0:.1f},{y(0):.1f}"], 0
        for day in sorted(line.per_day):
            running += line.per_day[day]
            path.append(f"H{x(day):.1f}V{y(running):.1f}")
        path.append(f"H{x(last):.1f}")
        out.append(f'<path d="{"".join(path)}" fill="none"{_stroke(line)}/>')
    legend_x = x0
    for line in lines:  # a stroke like the line's own, dashes and all
        out.append(
            f'<line x1="{legend_x}" x2="{legend_x + 22}" y1="{bottom + 36}" y2="{bottom + 36}"'
            f"{_stroke(line)}/>"
        )
        out.append(_text(legend_x + 28, bottom + 40, line.name))
        legend_x += 40 + 7 * len(line.name)
    return _svg(chart_id, title, desc, int(bottom + 50), out)
