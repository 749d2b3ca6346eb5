"""Render once per locale, fill per user. Pure.

Rendering the Jinja templates costs ~0.5 ms a template, while the output differs between
two users of the same locale and country only where it prints their personal values. So
each (locale, channel, country, ...) variant is rendered once with sentinel values, split
at the sentinels into a skeleton, and filled per user with plain string joins.

A skeleton is trusted only after it proves itself: the variant is rendered a second time
with very different sentinels (longer, with characters HTML must escape), and filling the
first skeleton with those must reproduce that second rendering exactly. A template whose
output depends on a personal value other than by printing it fails the proof, and its
users are rendered in full instead.
"""

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from markupsafe import escape

from engine.models import RenderedMessage

PERSONAL = ("id", "email", "name", "first_name", "locale", "timezone", "objection_url")
_SENTINEL = re.compile("\ue000([0-9])\ue001")


def sentinels_a(present: Mapping[str, bool]) -> dict[str, str | None]:
    return {f: f"\ue000{i}\ue001" if present[f] else None for i, f in enumerate(PERSONAL)}


def sentinels_b(present: Mapping[str, bool]) -> dict[str, str | None]:
    return {f: f"\ue002{f}<&'\"> long-{f}-value\ue003" if present[f] else None for f in PERSONAL}


@dataclass(frozen=True, slots=True)
class Skeleton:
    """Each output part as literals and field indexes, alternating."""

    subject: tuple[str | int, ...]
    text: tuple[str | int, ...]
    html: tuple[str | int, ...] | None

    def fill(self, values: Mapping[str, str | None]) -> tuple[str, str, str | None]:
        raw = [values[f] or "" for f in PERSONAL]
        if self.html is None:
            return _join(self.subject, raw), _join(self.text, raw), None
        escaped = [str(escape(v)) for v in raw]
        return _join(self.subject, raw), _join(self.text, raw), _join(self.html, escaped)


def build_skeleton(
    render: Callable[[Mapping[str, str | None]], RenderedMessage], present: Mapping[str, bool]
) -> Skeleton | None:
    """`render(values)` renders the variant with the given personal values."""
    a, b = sentinels_a(present), sentinels_b(present)
    first, second = render(a), render(b)
    skeleton = Skeleton(
        _split(first.subject),
        _split(first.text),
        None if first.html is None else _split(first.html),
    )
    if skeleton.fill(b) != (second.subject, second.text, second.html):
        return None
    return skeleton


def _split(output: str) -> tuple[str | int, ...]:
    parts: list[str | int] = []
    for i, piece in enumerate(_SENTINEL.split(output)):
        parts.append(int(piece) if i % 2 else piece)
    return tuple(parts)


def _join(parts: tuple[str | int, ...], values: list[str]) -> str:
    # _split alternates literal, index, literal, ...: swap the indexes for their values
    # by slice, with no Python-level loop over the literals (~1.8x faster than a generator
    # with isinstance; skeleton filling was 7% of an in-app send).
    out: list[str | int] = list(parts)
    out[1::2] = [values[i] for i in parts[1::2]]  # type: ignore[index]
    return "".join(out)  # type: ignore[arg-type]
