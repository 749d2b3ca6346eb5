"""The objection pages and the HTML report in a real browser. I/O: Chromium, HTTP on
loopback, a SQLite file.

Debian's Chromium, driven by Playwright, with JavaScript off as some users keep it; and an
axe-core scan of every page a user can reach from a link, and of the coverage report.

Playwright never downloads a browser here: it starts /usr/bin/chromium. Without it these
tests skip, unless HERALD_REQUIRE_BROWSER=1 (.ci/run sets it) makes that an error.
"""

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Browser, Locator, Page, expect, sync_playwright
from sqlalchemy import Engine, text

from engine.authoring.campaigns import Project, load_campaign
from engine.config import Settings
from engine.delivery.tokens import Keys
from engine.evidence.report import campaign_report
from engine.evidence.reportpage import render_report_html
from engine.service.app import create_app
from tests.conftest import ROOT, SHIPPED, copy_project, scratch_herald
from tests.service import serving

CHROMIUM = Path("/usr/bin/chromium")
# As root on a closed network: no sandbox (it needs user namespaces), and none of the
# background calls to Google's hosts, which this network refuses.
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
BLOCKING = ("serious", "critical")
# A4 portrait less the report's page margins (2 x 12 mm), in CSS pixels (96 to the inch).
A4_TEXT_WIDTH = round((210 - 24) / 25.4 * 96)
OBJECT = "Ich widerspreche"
CONFIRMED = "Ihr Widerspruch ist erfasst"


@dataclass
class Site:
    """The service over a sent campaign; each test objects as a German user of its own."""

    url: str
    engine: Engine
    keys: Keys
    german: list[str]  # user ids whose notice went out in German

    def page(self, user: int) -> str:
        """The objection page of the `user`-th German user."""
        with self.engine.connect() as conn:
            token_id = conn.execute(
                text("SELECT token_id FROM delivery WHERE user_id = :u AND channel = 'email'"),
                {"u": self.german[user]},
            ).scalar_one()
        return f"{self.url}/object/{self.keys.token(token_id)}"

    def count(self, table: str, user: int, where: str = "1 = 1") -> int:
        """Rows of `user` in `table`; events name the user by subject, not by id."""
        who = (
            "subject = (SELECT subject FROM subject_key WHERE user_id = :u)"
            if table == "event"
            else "user_id = :u"
        )
        with self.engine.connect() as conn:
            sql = f"SELECT COUNT(*) FROM {table} WHERE {who} AND {where}"
            return int(conn.execute(text(sql), {"u": self.german[user]}).scalar_one())


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    # Once per module, not per test: planning alone takes seconds. The same scratch
    # project and settings as the `herald` fixture, which is per test.
    project = copy_project(tmp_path_factory.mktemp("browser"))
    herald = scratch_herald(project)
    campaign = str(project.campaign)
    for command in (
        ("users", "generate", "--count", "30"),
        ("plan", campaign),
        ("send", campaign),  # the outbox transport
    ):
        result = herald(*command)
        assert result.exit_code == 0, result.output
    settings = Settings.from_env(herald.env)
    engine = herald.database()
    with engine.connect() as conn:
        german = sorted(
            conn.execute(
                text("SELECT user_id FROM delivery WHERE channel = 'email' AND locale = 'de'")
            ).scalars()
        )
    assert len(german) >= 3, "too few German users to object as"
    try:
        with serving(create_app(settings, engine, Project(project.root))) as url:
            yield Site(url, engine, Keys(settings.secret), german)
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def chromium() -> Path:
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} not found: apt-get install chromium (Debian's package)"
        if os.environ.get("HERALD_REQUIRE_BROWSER") == "1":
            pytest.fail(f"{reason}; HERALD_REQUIRE_BROWSER=1 forbids skipping")
        pytest.skip(reason)
    return CHROMIUM


@pytest.fixture(scope="module")
def browser(chromium: Path, site: Site) -> Iterator[Browser]:
    # After `site`: Playwright's sync API keeps an event loop running in the main thread
    # from here on, and `herald send` needs the main thread for an event loop of its own.
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(chromium), args=FLAGS)
        yield launched
        launched.close()


@contextmanager
def _page(browser: Browser, **options: Any) -> Iterator[Page]:
    context = browser.new_context(locale="de-DE", **options)  # a German user's browser
    context.set_default_timeout(5_000)
    try:
        yield context.new_page()
    finally:
        context.close()


def _heading(page: Page) -> Locator:
    return page.get_by_role("heading", level=1)


def test_objecting_without_javascript_shows_the_confirmation(browser, site):
    with _page(browser, java_script_enabled=False) as page:
        page.goto(site.page(0))
        expect(page.locator("html")).to_have_attribute("lang", "de")
        page.get_by_role("button", name=OBJECT).click()  # the reason stays empty
        expect(_heading(page)).to_have_text(CONFIRMED)
    assert site.count("objection", 0) == 1
    assert site.count("event", 0, "kind = 'objected'") == 1


def test_the_form_works_from_the_keyboard_alone(browser, site):
    with _page(browser, java_script_enabled=False) as page:
        page.goto(site.page(1))
        reason = page.get_by_role("textbox", name="Grund (optional)")
        for _ in range(100):  # past the language links, however many there are
            page.keyboard.press("Tab")
            if page.evaluate("document.activeElement.name") == "reason":
                break
        expect(reason).to_be_focused()
        page.keyboard.type("Nein, danke.")
        page.keyboard.press("Tab")
        expect(page.get_by_role("button", name=OBJECT)).to_be_focused()
        page.keyboard.press("Enter")
        expect(_heading(page)).to_have_text(CONFIRMED)
    assert site.count("objection", 1, "reason = 'Nein, danke.'") == 1


def test_no_page_has_a_serious_accessibility_violation(browser, site):
    objection = site.page(2)
    head, token = objection.rsplit("/", 1)
    tampered = f"{head}/{'B' if token[0] == 'A' else 'A'}{token[1:]}"  # in the signed id
    found: list[str] = []
    # axe-core is a script: only this context runs scripts, and it ignores the CSP.
    with _page(browser, java_script_enabled=True, bypass_csp=True) as page:
        page.goto(objection)
        found += _violations(page, "objection page")
        page.get_by_role("button", name=OBJECT).click()
        expect(_heading(page)).to_have_text(CONFIRMED)
        found += _violations(page, "confirmation page")
        page.goto(objection)
        expect(page.locator("form")).to_have_count(0)
        found += _violations(page, "objection page, objection on record")
        page.goto(tampered)
        expect(_heading(page)).to_have_text("Dieser Link funktioniert nicht")
        found += _violations(page, "error page")
    assert not found, "axe-core found serious or critical violations:\n\n" + "\n\n".join(found)


def _violations(page: Page, name: str) -> list[str]:
    """axe-core's serious and critical findings on `page`, each told in full."""
    results = Axe().run(page)
    return [
        f"{name}: {v['id']} ({v['impact']}): {v['help']}\n  {v['helpUrl']}\n"
        + "\n".join(
            f"  - {node['html']}\n    {node['failureSummary'].replace(chr(10), ' ')}"
            for node in v["nodes"]
        )
        for v in results.response["violations"]
        if v["impact"] in BLOCKING
    ]


def test_the_html_report_is_accessible_self_contained_and_fits_a4(browser, site, tmp_path):
    campaign = load_campaign(ROOT / "campaigns" / f"{SHIPPED}.yaml").campaign
    verdict = {"verified": True, "key_fingerprint": "SHA256:" + "ab" * 32, "checked_at": "now"}
    report = campaign_report(site.engine, campaign)
    assert report["notified"] > 0
    path = tmp_path / "report.html"
    path.write_text(render_report_html(report, verdict), encoding="utf-8")
    requested: list[str] = []
    # axe-core is a script: the page has none, so only the scan runs one.
    with _page(browser, java_script_enabled=True) as page:
        page.on("request", lambda request: requested.append(request.url))
        page.goto(path.as_uri())
        expect(_heading(page)).to_have_text(f"Coverage report: {campaign.title}")
        expect(page.get_by_role("img", name="Users notified over time")).to_be_visible()
        results = Axe().run(page).response
        found = [f"{v['id']} ({v['impact']}): {v['help']}" for v in results["violations"]]
        page.emulate_media(media="print")
        page.set_viewport_size({"width": A4_TEXT_WIDTH, "height": 1000})
        overflow = page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        pdf = page.pdf(format="A4")
    assert found == [], "axe-core found violations in the report:\n" + "\n".join(found)
    assert requested == [path.as_uri()]  # nothing from the network, nor another file
    assert overflow <= 0, f"the page is {overflow}px wider than A4's text width"
    assert pdf.startswith(b"%PDF")
