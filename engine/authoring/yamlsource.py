"""YAML read with positions: every key path keeps its line and column. Pure after the read.

PyYAML's SafeLoader follows YAML 1.1, where `NO` is false and `18:00` is the integer
64800. Campaign files hold country codes and times of day, so we resolve scalars the
YAML 1.2 way: only true/false are booleans, and there are no base-60 numbers.
"""

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from engine.errors import Problem

KeyPath = tuple[str | int, ...]


class _Yaml12Loader(yaml.SafeLoader):
    yaml_implicit_resolvers: dict[str, list[tuple[str, re.Pattern[str]]]] = {}


for _first, _resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items():
    _Yaml12Loader.yaml_implicit_resolvers[_first] = [
        (tag, regexp)
        for tag, regexp in _resolvers
        if tag not in ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:int")
    ]
_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool",
    re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"),
)
_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:int",
    re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"),
    list("-+0123456789"),
)


@dataclass
class LocatedYaml:
    """Parsed data plus where each key path sits in the file."""

    path: Path
    data: Any
    keys: dict[KeyPath, tuple[int, int]] = field(default_factory=dict)  # key token
    values: dict[KeyPath, tuple[int, int]] = field(default_factory=dict)  # value node

    def where(self, loc: KeyPath, *, key: bool = False) -> tuple[int, int]:
        """Line and column of `loc`, or of its nearest ancestor that exists."""
        table = self.keys if key else self.values
        while loc:
            if loc in table:
                return table[loc]
            if loc in self.values:
                return self.values[loc]
            loc = loc[:-1]
        return self.values.get((), (1, 1))

    def problem(
        self, loc: KeyPath, message: str, *, key: bool = False, severity: str = "error"
    ) -> Problem:
        line, column = self.where(loc, key=key)
        return Problem(self.path, message, line, column, dotted(loc), severity)


def dotted(loc: KeyPath) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def load_located(path: Path) -> tuple[LocatedYaml | None, list[Problem]]:
    """Read `path`; on a syntax error return None and the problem, located."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return None, [Problem(path, f"cannot read file: {exc}")]
    try:
        node = yaml.compose(text, Loader=_Yaml12Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (None, None)
        reason = " ".join(filter(None, [exc.context, exc.problem]))
        return None, [Problem(path, f"not valid YAML: {reason}", line, col)]
    except yaml.YAMLError as exc:
        return None, [Problem(path, f"not valid YAML: {exc}")]
    located = LocatedYaml(path, None)
    problems: list[Problem] = []
    if node is None:
        return located, [Problem(path, "the file is empty", 1, 1)]
    located.data = _build(node, (), located, problems, _Yaml12Loader(""))
    return located, problems


def _pos(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _build(
    node: yaml.Node,
    loc: KeyPath,
    out: LocatedYaml,
    problems: list[Problem],
    loader: _Yaml12Loader,
) -> Any:
    out.values[loc] = _pos(node)
    if isinstance(node, yaml.MappingNode):
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, str | int):
                key = str(key)
            child = (*loc, key)
            if key in result:
                line, col = _pos(key_node)
                first = out.keys[child][0]
                problems.append(
                    Problem(
                        out.path,
                        f"duplicate key (first given on line {first})",
                        line,
                        col,
                        dotted(child),
                    )
                )
                continue
            out.keys[child] = _pos(key_node)
            result[key] = _build(value_node, child, out, problems, loader)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_build(item, (*loc, i), out, problems, loader) for i, item in enumerate(node.value)]
    return loader.construct_object(node, deep=True)
