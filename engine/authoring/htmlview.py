"""What a reader of rendered HTML sees of its links and forms. Pure (the standard library's
html.parser).

`herald validate` asks this, not the markup's text, whether the objection link and the
objection form are there: a link inside a comment is in the text and nobody sees it. A
comment that never ends hides everything after it in a browser (HTML's "<!--" runs to the
end of the document), where html.parser would go on reading the markup as text and tags;
so the document is cut there first. An element with the `hidden` attribute, or a style
of `display:none`, `visibility:hidden` or `opacity:0`, hides what it holds. Which elements
a stylesheet's rules hide would take a CSS engine to say, so a stylesheet that hides
anything at all is reported (`hiding_rule`), and a button that is disabled (itself or by
its fieldset) sends nothing.
"""

import re
from collections.abc import Collection
from dataclasses import dataclass, field
from html import unescape
from html.parser import HTMLParser

_COMMENT_END = re.compile(r"--!?>")
_END = r"\s*(?:[;!}]|$)"  # the end of a declaration's value
HIDES = re.compile(
    r"display\s*:\s*none|visibility\s*:\s*(?:hidden|collapse)|opacity\s*:\s*0*\.?0*%?"
    + _END
    + r"|font-size\s*:\s*0(?:px|pt|em|rem|%)?"
    + _END,
    re.IGNORECASE,
)
# A box of no height or width hides what it holds when it also clips its overflow.
_NO_BOX = re.compile(r"(?:max-)?(?:height|width)\s*:\s*0(?:px|em|rem|%)?" + _END, re.IGNORECASE)
_CLIPS = re.compile(r"overflow(?:-[xy])?\s*:\s*(?:hidden|clip)", re.IGNORECASE)


def style_hides(declarations: str) -> str | None:
    """The declaration in a style (or in one rule's block) that hides what it applies to:
    display:none, visibility:hidden, opacity:0, font-size:0, or a box of no height or
    width that clips its overflow. Read as written: Herald is not a browser, and CSS has
    more ways to hide than these."""
    if found := HIDES.search(declarations):
        return found.group(0).rstrip(";!} \n")
    if (box := _NO_BOX.search(declarations)) and _CLIPS.search(declarations):
        return box.group(0).rstrip(";!} \n")
    return None


_VOID = frozenset("area base br col embed hr img input link meta source track wbr".split())


@dataclass
class Form:
    method: str
    action: str = ""  # where it posts; "" (or none): the page's own address
    submits: int = 0  # submit buttons inside it, not disabled


@dataclass
class View:
    links: list[str] = field(default_factory=list)  # hrefs of the <a> a reader sees
    forms: list[Form] = field(default_factory=list)  # the forms a reader sees
    unclosed_comment_line: int | None = None  # where a comment that never ends begins
    unclosed_comment_text: str = ""  # its first line, to find the template it came from

    def unclosed_comment(self) -> str | None:
        """The problem with a comment that never ends, if there is one."""
        if self.unclosed_comment_line is None:
            return None
        return (
            f"an HTML comment that never ends hides everything after it from a reader: "
            f"{self.unclosed_comment_text[:60]!r}"
        )


# Nothing can hide a link in HTML without one of these: a comment, the `hidden`
# attribute, a hiding style. Without them every <a href> is seen, and a search finds
# them ~20x faster than parsing (validate reads ~200 sample emails).
_MAY_HIDE = re.compile(
    r"<!--|\bhidden\b|display\s*:\s*none|visibility\s*:|opacity\s*:|font-size\s*:\s*0|"
    r"overflow(?:-[xy])?\s*:\s*(?:hidden|clip)",
    re.IGNORECASE,
)
_HREF_VALUE = r"""\shref\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+))"""
_HREF = re.compile(r"<a\b[^>]*?" + _HREF_VALUE, re.IGNORECASE)


def visible_links(html: str) -> list[str]:
    """The hrefs of the links a reader sees, in order (view(html).links)."""
    if _MAY_HIDE.search(html):
        return view(html).links
    return [_value(m) for m in _HREF.finditer(html)]


def _value(match: re.Match[str]) -> str:
    """The attribute value a _HREF_VALUE match found, however it was quoted."""
    return unescape(next(v for v in match.groups() if v is not None))


_STYLE = re.compile(r"<style\b[^>]*>(.*?)(?:</style|$)", re.IGNORECASE | re.DOTALL)


def hiding_rule(css: str) -> str | None:
    """The first declaration in a stylesheet that hides what its rule selects."""
    for block in css.split("}"):
        if hides := style_hides(block.rpartition("{")[2]):
            return hides
    return None


def hiding_stylesheet(html: str) -> str | None:
    """A hiding declaration in one of the document's <style> elements, if any."""
    for sheet in _STYLE.findall(html) if "<style" in html.lower() else ():
        if rule := hiding_rule(sheet):
            return rule
    return None


_LINKED_CSS = re.compile(
    r"<link\b[^>]*\brel\s*=\s*[\"']?stylesheet\b[^>]*>|@import\b[^;]*", re.IGNORECASE
)
_HREF_OF = re.compile(_HREF_VALUE, re.IGNORECASE)


def linked_stylesheets(html: str) -> list[str]:
    """What the document loads as style from elsewhere: each stylesheet <link>'s href,
    and each @import as written."""
    out = []
    for found in _LINKED_CSS.finditer(html):
        href = _HREF_OF.search(found.group(0)) if found.group(0).startswith("<") else None
        out.append(_value(href) if href else found.group(0))
    return out


def style_risks(
    text: str, guarded: str, allowed: Collection[str] = (), *, css: bool = False
) -> list[tuple[str, str]]:
    """(what, why) for each way the style of a document (or, `css`, of a stylesheet) could
    hide `guarded` from a reader: a rule that hides what it selects, which only a browser
    could match to elements, and style loaded from elsewhere but `allowed` (checked on its
    own), which is not bound to the campaign and may change after launch."""
    risks = []
    if rule := hiding_rule(text) if css else hiding_stylesheet(text):
        why = (
            f"a stylesheet rule hides what it selects ({rule}): which elements, only a "
            f"browser can say, so the {guarded} could be among them"
        )
        risks.append((rule, why))
    for sheet in linked_stylesheets(text):
        if sheet not in allowed:
            why = (
                f"style loaded from elsewhere ({sheet}) is not bound to the campaign and "
                f"could hide the {guarded} after launch; keep the style in the templates"
            )
            risks.append((sheet, why))
    return risks


def view(html: str) -> View:
    seen = View()
    cut = _unclosed_comment(html)
    if cut is not None:
        seen.unclosed_comment_line = html.count("\n", 0, cut) + 1
        seen.unclosed_comment_text = html[cut:].split("\n", 1)[0].strip()
        html = html[:cut]
    parser = _Reader(seen)
    parser.feed(html)
    parser.close()
    return seen


def _unclosed_comment(html: str) -> int | None:
    """Where a comment begins that no "-->" ends, or None."""
    at = 0
    while (start := html.find("<!--", at)) >= 0:
        if html.startswith("<!-->", start) or html.startswith("<!--->", start):
            at = start + 4  # an empty comment, closed at once
            continue
        end = _COMMENT_END.search(html, start + 4)
        if end is None:
            return start
        at = end.end()
    return None


class _Reader(HTMLParser):
    def __init__(self, seen: View) -> None:
        super().__init__(convert_charrefs=True)
        self.seen = seen
        self.open: list[tuple[str, bool]] = []  # (tag, hides what it holds)
        self.disabling: list[bool] = []  # for each open tag: a disabled fieldset
        self.form: Form | None = None

    @property
    def hidden(self) -> bool:
        return any(hides for _, hides in self.open)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        hides = "hidden" in values or style_hides(values.get("style") or "") is not None
        visible = not self.hidden and not hides
        if tag == "a" and visible and values.get("href"):
            self.seen.links.append(values["href"] or "")
        if tag == "form":
            self.form = Form((values.get("method") or "get").lower(), values.get("action") or "")
            if visible:
                self.seen.forms.append(self.form)
        submit = (tag == "button" and (values.get("type") or "submit").lower() == "submit") or (
            tag == "input" and (values.get("type") or "").lower() == "submit"
        )
        disabled = "disabled" in values or self.disabled_fieldset
        if submit and visible and not disabled and self.form is not None:
            self.form.submits += 1
        if tag not in _VOID:
            self.open.append((tag, hides))
            self.disabling.append(tag == "fieldset" and "disabled" in values)

    @property
    def disabled_fieldset(self) -> bool:
        return any(self.disabling)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in _VOID and self.open and self.open[-1][0] == tag:
            self.open.pop()
            self.disabling.pop()

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self.form = None
        for i in range(len(self.open) - 1, -1, -1):  # close it and whatever it left open
            if self.open[i][0] == tag:
                del self.open[i:]
                del self.disabling[i:]
                break
