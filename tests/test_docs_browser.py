"""/docs in Chromium: Swagger UI from the service's own origin, under its strict
Content-Security-Policy, loading nothing from anywhere else. I/O: Chromium, HTTP on
loopback, a SQLite file."""

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from engine.authoring.campaigns import Project
from engine.config import Settings
from engine.service.app import create_app
from tests.conftest import copy_project, scratch_herald
from tests.service import serving
from tests.test_browser import CHROMIUM, FLAGS


@pytest.fixture
def docs_url(tmp_path: Path) -> Iterator[str]:
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} not found: apt-get install chromium (Debian's package)"
        if os.environ.get("HERALD_REQUIRE_BROWSER") == "1":
            pytest.fail(f"{reason}; HERALD_REQUIRE_BROWSER=1 forbids skipping")
        pytest.skip(reason)
    project = copy_project(tmp_path)
    herald = scratch_herald(project)
    engine = herald.database()
    try:
        app = create_app(Settings.from_env(herald.env), engine, Project(project.root), docs=True)
        with serving(app) as url:
            yield url
    finally:
        engine.dispose()


def test_docs_render_from_our_origin_alone(docs_url):
    requested: list[str] = []
    problems: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        try:
            page = browser.new_page()
            page.set_default_timeout(10_000)
            page.on("request", lambda request: requested.append(request.url))
            page.on(
                "console",
                lambda message: problems.append(message.text) if message.type == "error" else None,
            )
            page.goto(f"{docs_url}/docs")
            page.locator(".swagger-ui .info .title").wait_for()
            title = page.locator(".swagger-ui .info .title").inner_text()
            operations = page.locator(".opblock").count()
        finally:
            browser.close()
    assert "Herald" in title
    assert operations == 4  # every API operation, from /openapi.json
    outside = [url for url in requested if not url.startswith(docs_url)]
    assert outside == []
    assert [p for p in problems if "Content Security Policy" in p] == []
