"""Static checks of template source. Reads templates/; otherwise pure.

Jinja renders only the blocks of a template that extends a layout: text outside every
block is dropped without a word. An author who adds a paragraph after the last
`{% endblock %}` would never see it in any email, so it is an error here.
"""

from collections.abc import Iterable, Iterator
from pathlib import Path

import jinja2
from jinja2 import nodes

from engine.errors import Problem

# What may stand outside the blocks of a child template: these produce no output there.
_SILENT = (nodes.Extends, nodes.Block, nodes.Macro, nodes.Import, nodes.FromImport, nodes.Assign)


def check_templates(folders: Iterable[Path], root: Path) -> list[Problem]:
    """Problems in every template under `folders` (names relative to `root`)."""
    env = jinja2.Environment(extensions=["jinja2.ext.i18n"])
    out: list[Problem] = []
    for folder in folders:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            try:
                source = path.read_text(encoding="utf-8")
                tree = env.parse(source, path.relative_to(root).as_posix(), str(path))
            except (UnicodeDecodeError, jinja2.TemplateSyntaxError):
                continue  # reported where the templates are rendered or extracted
            out += _dropped_text(tree, path)
    return out


def _dropped_text(tree: nodes.Template, path: Path) -> Iterator[Problem]:
    if not any(isinstance(node, nodes.Extends) for node in tree.body):
        return
    for node in tree.body:
        if isinstance(node, _SILENT) or _blank(node):
            continue
        yield Problem(
            path,
            "text outside any block in a template that extends a layout: Jinja drops it "
            "without a word; move it into a {% block %}",
            _first_line(node),
        )


def _first_line(node: nodes.Node) -> int:
    """The line of the first thing `node` shows (Jinja dates text from the line before)."""
    for child in node.nodes if isinstance(node, nodes.Output) else ():
        if isinstance(child, nodes.TemplateData):
            if child.data.strip():
                stripped = child.data.lstrip()
                return int(child.lineno) + child.data[: len(child.data) - len(stripped)].count("\n")
            continue
        return int(child.lineno)
    return int(node.lineno)


def _blank(node: nodes.Node) -> bool:
    """Only whitespace: what stands between blocks."""
    if not isinstance(node, nodes.Output):
        return False
    return all(isinstance(n, nodes.TemplateData) and not n.data.strip() for n in node.nodes)
