"""YAML loading that remembers where every key came from, so validation errors can name FILE:LINE KEY."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

Loc = tuple[str | int, ...]


class YamlSourceError(ValueError):
    def __init__(self, path: Path, line: int, message: str) -> None:
        super().__init__(f"{path}:{line}: {message}")
        self.path, self.line = path, line


@dataclass(slots=True)
class SourceDoc:
    """Plain data from a YAML file plus the 1-based line of every key path."""

    path: Path
    data: Any
    lines: dict[Loc, int] = field(default_factory=dict)

    def line_of(self, loc: Loc) -> int:
        """The line of the nearest enclosing key that exists in the file."""
        for n in range(len(loc), -1, -1):
            if loc[:n] in self.lines:
                return self.lines[loc[:n]]
        return 1


def load_yaml(path: Path) -> SourceDoc:
    text = path.read_text(encoding="utf-8")
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        problem = getattr(exc, "problem", None) or str(exc)
        raise YamlSourceError(path, line, f"invalid YAML: {problem}") from None
    doc = SourceDoc(path, None, {(): 1})
    if node is not None:
        doc.data = _build(node, (), doc)
    return doc


def _build(node: yaml.Node, loc: Loc, doc: SourceDoc) -> Any:
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = _scalar(key_node, doc)
            if key in out:
                raise YamlSourceError(doc.path, key_node.start_mark.line + 1, f"duplicate key {key!r}")
            doc.lines[(*loc, key)] = key_node.start_mark.line + 1
            out[key] = _build(value_node, (*loc, key), doc)
        return out
    if isinstance(node, yaml.SequenceNode):
        items = []
        for i, item in enumerate(node.value):
            doc.lines[(*loc, i)] = item.start_mark.line + 1
            items.append(_build(item, (*loc, i), doc))
        return items
    return _scalar(node, doc)


def _scalar(node: yaml.Node, doc: SourceDoc) -> Any:
    if not isinstance(node, yaml.ScalarNode):
        raise YamlSourceError(doc.path, node.start_mark.line + 1, "keys must be plain scalars")
    return yaml.SafeLoader(" ").construct_object(node, deep=True)
