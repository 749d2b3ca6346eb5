"""The HTML coverage report: its figures against `report --format json` through the CLI on
a real SQLite file, and the page itself (self-contained, escaped, honest about the
evidence) from report dicts. tests/test_browser.py opens it in Chromium."""

import json
import re
from html.parser import HTMLParser
from typing import Any

import pytest

from engine.evidence.reportpage import render_report_html
from engine.store.objections import mark_seen
from tests.test_report import CAMPAIGN, _notified, _object

# Anything that could make a browser fetch something, or run something.
FETCHING = {"src", "href", "srcset", "action", "formaction", "xlink:href", "poster", "data"}


class Page(HTMLParser):
    """What a test needs of the page: every tagged figure, every tag, every fetching
    attribute, and the text."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.figures: dict[str, tuple[Any, str]] = {}
        self.tags: set[str] = set()
        self.fetching: list[tuple[str, str, str]] = []
        self.text: list[str] = []
        self.styles: list[str] = []
        self._open: list[tuple[str, Any, list[str]]] = []
        self._in_style = False
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        found = dict(attrs)
        self.fetching += [(tag, k, v or "") for k, v in attrs if k in FETCHING and tag != "data"]
        self._in_style = tag == "style"
        if tag == "data" and "data-figure" in found:
            self._open.append((found["data-figure"] or "", json.loads(found["value"] or ""), []))

    def handle_endtag(self, tag: str) -> None:
        self._in_style = False
        if tag == "data" and self._open:
            pointer, value, text = self._open.pop()
            assert pointer not in self.figures, f"{pointer} shown twice"
            self.figures[pointer] = (value, "".join(text))

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._in_style:
            self.styles.append(data)
        for _, _, text in self._open:
            text.append(data)


def _resolve(report: Any, pointer: str) -> Any:
    for step in pointer.split("/")[1:]:
        step = step.replace("~1", "/").replace("~0", "~")
        report = report[int(step)] if isinstance(report, list) else report[step]
    return report


def _leaves(value: Any, pointer: str = "") -> dict[str, Any]:
    """Every number and yes/no in the JSON report, by JSON pointer."""
    if isinstance(value, dict):
        items: Any = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return {pointer: value} if isinstance(value, int | float) else {}
    found: dict[str, Any] = {}
    for key, inner in items:
        found |= _leaves(inner, f"{pointer}/{str(key).replace('~', '~0').replace('/', '~1')}")
    return found


def _assert_self_contained(page: Page) -> None:
    assert "script" not in page.tags
    assert not {"link", "img", "iframe", "object", "embed", "base"} & page.tags
    assert page.fetching == []
    assert not re.search(r"url\(|@import", "".join(page.styles))


def test_html_report_shows_every_figure_of_the_json_report(herald, tmp_path):
    extra = tmp_path / "extra.csv"
    extra.write_text("id,email,name,country,locale,timezone\nno-mail,,Kari,NO,nb,Europe/Oslo\n")
    for command in (
        ("users", "generate", "--count", "30"),
        ("users", "import", str(extra)),
        ("plan", CAMPAIGN),
        ("send", CAMPAIGN),
    ):
        result = herald(*command)
        assert result.exit_code == 0, result.output
    users = sorted(_notified(herald).values(), key=lambda u: u.user_id)
    engine = herald.database()
    try:
        for i, user in enumerate(users[:6]):
            assert mark_seen(engine, user.inbox_id, None, user.sent_at - 86400 * i) is not None
        for i, user in enumerate(users[3:7]):
            _object(herald, engine, user, user.sent_at + 86400 * (i - 3))
    finally:
        engine.dispose()

    as_json = herald("report", CAMPAIGN, "--format", "json")
    assert as_json.exit_code == 0, as_json.output
    report = json.loads(as_json.stdout)
    out = tmp_path / "report.html"
    written = herald("report", CAMPAIGN, "--format", "html", "--out", str(out))
    assert written.exit_code == 0, written.output
    printed = herald("report", CAMPAIGN, "--format", "html")
    assert printed.exit_code == 0, printed.output

    for html in (out.read_text(encoding="utf-8"), printed.stdout):
        page = Page(html)
        _assert_self_contained(page)
        expected = _leaves(report)
        assert len(expected) > 100  # the over-time days, countries, locales are there
        assert set(page.figures) == set(expected)
        for pointer, (value, shown) in page.figures.items():
            assert value == _resolve(report, pointer), pointer
            if isinstance(value, int) and not isinstance(value, bool):
                assert shown.replace(",", "") == str(value), pointer
    text = " ".join(" ".join(page.text).split())
    assert f"{report['targeted']} targeted = {report['notified']} notified" in text
    assert "Not verified." in text  # the CLI does not check the evidence
    assert report["seen"] == 6
    assert len(report["over_time"]["seen"]) >= 5


def _report(**changes: Any) -> dict[str, Any]:
    """A small report, as evidence.report.build_report makes them."""
    zero = dict.fromkeys(
        ("targeted", "notified", "failed", "pending", "fell_back", "before_deadline"), 0
    ) | {"before_effective": 0, "seen": 0, "objected": 0}
    report = {
        "campaign": "c-1",
        "title": "Policy update",
        "targeted": 3,
        "notified": 2,
        "failed": 1,
        "pending": 0,
        "coverage_equation_holds": True,
        "notified_before_deadline": 2,
        "notified_late": 0,
        "deadline": "2024-06-12T00:00:00+00:00",
        "notified_before_effective_date": 2,
        "notified_after_effective_date": 0,
        "effective_date": "2024-06-26",
        "fell_back_locale": 1,
        "possible_duplicates": 0,
        "fallback_planned": 0,
        "next_due": None,
        "channels": {"email": {"sent": 2, "failed": 1, "pending": 0}},
        "failure_reasons": [{"channel": "email", "reason": "550 <b>no</b>", "count": 1}],
        "seen": 0,
        "objected": 0,
        "median_notice_to_objection_s": None,
        "by_country": {"DE": {**zero, "targeted": 3, "notified": 2, "failed": 1}},
        "by_locale": {"de": {**zero, "targeted": 2}, "en": {**zero, "fell_back": 1}},
        "by_channel": {"email": {"seen": 0, "objected": 0}},
        "over_time": {
            "users_notified": {"2024-06-01": 2},
            "notices_by_channel": {"email": {"2024-06-01": 2}},
            "seen": {},
            "objected": {},
        },
    }
    return report | changes


@pytest.mark.parametrize(
    ("verdict", "shown", "absent"),
    [
        pytest.param(None, "Not verified.", "Verified.", id="not-checked"),
        pytest.param(
            {"verified": None, "key_fingerprint": None, "checked_at": None},
            "Not verified.",
            "Signing key",
            id="unknown",
        ),
        pytest.param(
            {"verified": True, "key_fingerprint": "SHA256:ab12", "checked_at": "2024-07-01"},
            "Verified. The figures were checked against the signed evidence on 2024-07-01. "
            "Signing key fingerprint: SHA256:ab12",
            "Not verified",
            id="verified",
        ),
        pytest.param(
            {"verified": False, "key_fingerprint": "SHA256:ab12", "checked_at": None},
            "Verification failed.",
            "Verified.",
            id="failed",
        ),
    ],
)
def test_html_report_says_whether_the_evidence_verified(verdict, shown, absent):
    text = " ".join(" ".join(Page(render_report_html(_report(), verdict)).text).split())
    assert shown in text
    assert absent not in text


def test_html_report_escapes_what_it_shows():
    page = Page(
        render_report_html(_report(title="<script>alert(1)</script>", campaign='c"><img src=x>'))
    )
    _assert_self_contained(page)
    assert "<script>alert(1)</script>" in " ".join(page.text)
    assert "550 <b>no</b>" in " ".join(page.text)
    assert "b" not in page.tags


def test_html_report_marks_the_locales_users_fell_back_to():
    page = render_report_html(_report())
    rows = re.findall(r'<tr><th scope="row">(.*?)</th>', page)
    [english] = [r for r in rows if "(en)" in r]
    [german] = [r for r in rows if "(de)" in r]
    assert "↩" in english
    assert "fell back to" in english
    assert "↩" not in german
    assert "1 fell back to it" in page  # beside the bar in the chart


def test_html_report_shows_figures_it_has_no_section_for():
    # A figure a later report adds (bounces, say) is on the page before anyone lays it out.
    page = Page(render_report_html(_report(bounced={"email": 4}, tls_share=0.5)))
    assert page.figures["/bounced/email"] == (4, "4")
    assert page.figures["/tls_share"] == (0.5, "0.5")


def test_html_report_of_a_campaign_with_no_users_yet():
    zero: dict[str, Any] = {"users_notified": {}, "notices_by_channel": {}, "seen": {}}
    report = _report(
        targeted=0,
        notified=0,
        failed=0,
        notified_before_deadline=0,
        notified_before_effective_date=0,
        fell_back_locale=0,
        channels={},
        failure_reasons=[],
        by_country={},
        by_locale={},
        over_time=zero | {"objected": {}},
    )
    page = Page(render_report_html(report))
    text = " ".join(" ".join(page.text).split())
    assert "0 targeted = 0 notified + 0 failed + 0 pending" in text
    assert "No notice has gone out yet." in text
    assert "No notice has failed for good." in text
