"""Static checks of template source. Reads templates/; otherwise pure.

Jinja renders only the blocks of a template that extends a layout: text outside every
block is dropped without a word. An author who adds a paragraph after the last
`{% endblock %}` would never see it in any email, so it is an error here.
"""

from collections.abc import Collection, Iterable, Iterator, Mapping
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


def check_references(
    sources: Iterable[TemplateSource], folders: Collection[str], known: Mapping[str, str]
) -> list[Problem]:
    """Every template a template names (extends, include, import) must be a file of the
    campaign's spec: under one of `folders` of templates/ (specs.template_folders). One
    elsewhere renders here alike, but it is neither bound to the campaign at launch nor
    stored with it: edited afterwards, it would change what the rest of the audience gets
    with nothing in the evidence to show it, and a campaign restored from its stored
    files would lack it. A name may join strings and the variables Herald sets to fixed
    values (`known`: objection_template, for the shared pages); one computed from anything
    else cannot be checked, so it is refused too."""
    allowed = ", ".join(f"{name}/" for name in folders)
    out: list[Problem] = []
    for source in sources:
        if source.tree is None:
            continue
        for node in source.tree.find_all(_REFERENCES):
            names = _template_names(node.template, known)  # type: ignore[attr-defined]
            if names is None:
                out.append(
                    Problem(
                        source.path,
                        "a template name computed at render time: name the file itself, so "
                        f"that it can be checked to be one of the campaign's ({allowed})",
                        node.lineno,
                    )
                )
                continue
            for name in names:
                parts = [part for part in name.split("/") if part not in ("", ".")]
                if parts and parts[0] not in folders:
                    out.append(
                        Problem(
                            source.path,
                            f"{name!r} is outside the folders this template may use "
                            f"({allowed}): a file elsewhere is not bound to the campaign at "
                            "launch, or (the other side's) is not translated by this side's "
                            "catalog; move it into one of them",
                            node.lineno,
                        )
                    )
    return out


_REFERENCES = (nodes.Extends, nodes.Include, nodes.Import, nodes.FromImport)


def _template_names(expression: nodes.Expr, known: Mapping[str, str]) -> list[str] | None:
    """The names a reference's expression holds: one, or a list to try in turn (include
    ["a", "b"]); None when one depends on anything but strings and `known` variables."""
    if isinstance(expression, nodes.List | nodes.Tuple):
        items = [_template_name(item, known) for item in expression.items]
        return None if None in items else items  # type: ignore[return-value]
    if isinstance(expression, nodes.Const) and isinstance(expression.value, list | tuple):
        values = list(expression.value)
        return values if all(isinstance(v, str) for v in values) else None
    name = _template_name(expression, known)
    return None if name is None else [name]


def _template_name(expression: nodes.Expr, known: Mapping[str, str]) -> str | None:
    if isinstance(expression, nodes.Const):
        return expression.value if isinstance(expression.value, str) else None
    if isinstance(expression, nodes.Name):
        return known.get(expression.name)
    if isinstance(expression, nodes.Concat):  # a ~ b
        parts = [_template_name(part, known) for part in expression.nodes]
        return None if None in parts else "".join(parts)  # type: ignore[arg-type]
    return None


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
