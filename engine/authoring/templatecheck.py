"""Static checks of template source. Reads templates/; otherwise pure.

Jinja renders only the blocks of a template that extends a layout: text outside every
block is dropped without a word. An author who adds a paragraph after the last
`{% endblock %}` would never see it in any email, so it is an error here.
"""

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import jinja2
from jinja2 import nodes

from engine.authoring.campaignspec import Policy
from engine.authoring.rendering import ALL_USER_FIELDS
from engine.errors import Problem

# The variables of every template whose fields are fixed: rendering.build_context and
# pages._campaign (policy: the campaign file's policy section, by its YAML names).
_FIELDS = {
    "user": ALL_USER_FIELDS,
    "campaign": frozenset({"id", "title"}),
    "policy": frozenset(f.alias or name for name, f in Policy.model_fields.items()),
}
# What may stand outside the blocks of a child template: these produce no output there.
_SILENT = (nodes.Extends, nodes.Block, nodes.Macro, nodes.Import, nodes.FromImport, nodes.Assign)


@dataclass(frozen=True)
class TemplateSource:
    """One file of a template folder, parsed."""

    path: Path
    tree: nodes.Template | None  # None: not UTF-8, or not valid Jinja
    not_utf8: UnicodeDecodeError | None = None


def parse_templates(folders: Iterable[Path]) -> list[TemplateSource]:
    """Every file under `folders`, parsed as `pybabel extract` parses it (the i18n
    extension, messages trimmed): once for the message extraction and the checks here,
    which each read, parsed (and Babel lexed again) every file (~0.02 s a validation)."""
    env = jinja2.Environment(extensions=["jinja2.ext.i18n"])
    env.policies["ext.i18n.trimmed"] = True
    out: list[TemplateSource] = []
    for folder in folders:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            try:
                source = path.read_bytes().decode("utf-8")
            except UnicodeDecodeError as exc:
                out.append(TemplateSource(path, None, exc))
                continue
            try:
                out.append(TemplateSource(path, env.parse(source, filename=str(path))))
            except jinja2.TemplateSyntaxError:  # reported where the templates are rendered
                out.append(TemplateSource(path, None))
    return out


def check_templates(sources: Iterable[TemplateSource]) -> list[Problem]:
    """Problems in every template of `sources` (parse_templates)."""
    out: list[Problem] = []
    for source in sources:
        if source.tree is not None:  # else reported where rendered or extracted
            out += _dropped_text(source.tree, source.path)
            out += _unknown_fields(source.tree, source.path)
    return out


def _unknown_fields(tree: nodes.Template, path: Path) -> Iterator[Problem]:
    """`user.first_nam` and the like, wherever they stand. The sample renders reach only
    the branches their users take; one for users of a country no sample lives in would
    fail at send time, for each of them (rendering.build_context lists the fields)."""
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        if isinstance(node, nodes.Getattr):
            owner, field = node.node, node.attr
        elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
            owner, field = node.node, node.arg.value
        else:
            continue
        if not isinstance(owner, nodes.Name) or owner.name not in _FIELDS:
            continue
        known = _FIELDS[owner.name]
        if isinstance(field, str) and field not in known:
            yield Problem(
                path,
                f"{owner.name}.{field} does not exist: {owner.name} has {', '.join(sorted(known))}",
                int(node.lineno),
            )


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
