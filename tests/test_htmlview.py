"""What a reader sees of rendered HTML (engine/authoring/htmlview.py), held to Chromium:
for each document, the links and posting forms with a submit button that `view()` finds
are those a real browser shows. `herald validate` relies on it to prove that the
objection link and form are there for a reader, not only in the markup."""

import os
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, sync_playwright

from engine.authoring.htmlview import hiding_stylesheet, view, visible_links
from tests.test_browser import CHROMIUM, FLAGS

DOCUMENTS = {
    "plain": '<p><a href="https://x/1">one</a></p>',
    "attributes around href": "<a class=b href='https://x/1?a=1&amp;b=2' title=\"x\">1</a>",
    "unquoted href, no link": '<a href=https://x/1>one</a><abbr href="https://x/2">2</abbr>',
    "closed comment": '<!-- <a href="https://x/1">one</a> --><a href="https://x/2">two</a>',
    "unclosed comment": '<a href="https://x/1">one</a><!-- TODO <a href="https://x/2">two</a>',
    "unclosed comment, link later": '<!-- TODO <a href="https://x/1">one</a><p><a href="/2">2</a>',
    "comment ended by --!>": '<!-- gone --!><a href="https://x/1">one</a>',
    "empty comment <!-->": '<!--><a href="https://x/1">one</a>',
    "empty comment <!--->": '<!---><a href="https://x/1">one</a>',
    "dashes inside": '<!-- a -- b --><a href="https://x/1">one</a>',
    "hidden attribute": '<div hidden><a href="https://x/1">one</a></div><a href="https://x/2">2</a>',
    "display none": '<p style="color:red; DISPLAY : none"><a href="https://x/1">one</a></p>',
    "form that posts": '<form method="post"><textarea></textarea><button>Go</button></form>',
    "button of type button": '<form method="post"><button type="button">Go</button></form>',
    "submit input": '<form method="POST"><input type="submit" value="Go"></form>',
    "form in a comment": '<!-- <form method="post"><button>Go</button></form> -->',
    "form that gets": "<form><button>Go</button></form>",
    "hidden button": '<form method="post"><button hidden>Go</button></form>',
    "visibility hidden": '<div style="visibility:hidden"><a href="https://x/1">one</a></div>',
    "visibility collapse": '<p style="visibility: collapse"><a href="https://x/1">1</a></p>',
    "half transparent": '<p style="opacity:0.5"><a href="https://x/1">one</a></p>',
    "no height, not clipped": '<div style="height:0px"><a href="https://x/1">one</a></div>',
    "no text size": '<p style="font-size:0"><a href="https://x/1">one</a></p><a href="/2">2</a>',
    "disabled button": '<form method="post"><button disabled>Go</button></form>',
    "disabled fieldset": '<form method="post"><fieldset disabled><button>Go</button></fieldset>'
    "</form>",
    "after a disabled fieldset": '<form method="post"><fieldset disabled></fieldset>'
    "<button>Go</button></form>",
}


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        if os.environ.get("HERALD_REQUIRE_BROWSER") == "1":
            pytest.fail(f"{CHROMIUM} not found; HERALD_REQUIRE_BROWSER=1 forbids skipping")
        pytest.skip(f"{CHROMIUM} not found: apt-get install chromium (Debian's package)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        yield launched
        launched.close()


@pytest.mark.parametrize("name", list(DOCUMENTS))
def test_what_view_sees_is_what_chromium_shows(browser: Browser, name: str) -> None:
    html = f"<!DOCTYPE html><html><body>{DOCUMENTS[name]}</body></html>"
    page = browser.new_page(java_script_enabled=False)
    try:
        page.set_content(html)
        links = [a.get_attribute("href") or "" for a in page.locator("a").all() if a.is_visible()]
        forms = sum(
            1
            for form in page.locator("form").all()
            if (form.get_attribute("method") or "get").lower() == "post"
            and any(
                b.is_visible() and b.is_enabled()
                for b in form.locator("button:not([type]), [type=submit]").all()
            )
        )
    finally:
        page.close()
    seen = view(html)
    assert seen.links == links
    assert visible_links(html) == links  # the search that stands in for the parse
    assert sum(1 for f in seen.forms if f.method == "post" and f.submits) == forms


def test_a_comment_that_never_ends_is_named_by_its_first_line() -> None:
    seen = view('<p>ok</p>\n<!-- legal: reword?\n<a href="https://x/1">one</a>')
    assert seen.unclosed_comment_line == 2
    assert seen.unclosed_comment() == (
        "an HTML comment that never ends hides everything after it from a reader: "
        "'<!-- legal: reword?'"
    )
    assert view("<!-- fine --><p>ok</p>").unclosed_comment() is None


def test_what_is_fully_transparent_or_clipped_away_is_not_seen() -> None:
    """opacity:0 shows nothing, nor does a box of no height that clips its overflow,
    though Playwright's is_visible() counts such an element visible (it asks for a box of
    its own and no visibility:hidden), so Chromium cannot be the reference here."""
    assert view('<div style="max-height:0;overflow:hidden"><a href="/1">1</a></div>').links == []
    seen = view('<p style="opacity:0"><a href="https://x/1">one</a></p><a href="/2">2</a>')
    assert seen.links == ["/2"]
    form = view('<form method="post"><button style="opacity: 0.0;">Go</button></form>').forms
    assert [f.submits for f in form] == [0]
    assert view('<p style="opacity:0.05"><a href="/1">1</a></p>').links == ["/1"]


def test_a_stylesheet_that_hides_anything_is_named() -> None:
    assert hiding_stylesheet("<style>.gone { DISPLAY: none }</style><p>x</p>") == "DISPLAY: none"
    assert hiding_stylesheet("<style>\n a {opacity:0}\n</style>") == "opacity:0"
    assert hiding_stylesheet("<style>@media (max-width:620px){.c{padding:0}}</style>") is None
    assert hiding_stylesheet("<style>.a{height:0} .b{overflow:hidden}</style>") is None
    assert hiding_stylesheet("<style>.a{height:0;overflow:hidden}</style>") == "height:0"
    assert hiding_stylesheet('<p style="display:none">inline, seen by view()</p>') is None
