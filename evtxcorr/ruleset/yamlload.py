"""Safe YAML loading that remembers where every key and list item was written.

PyYAML composes a node tree with marks; we build plain Python values from it ourselves so that
each value's position survives, and so that a duplicate key is an error (PyYAML keeps the last one
silently). Positions are 1-based, as editors show them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from evtxcorr.errors import Location, RuleError

KeyPath = tuple[str | int, ...]


@dataclass(frozen=True)
class Doc:
    """One loaded YAML document: plain data plus the position of every key (or list item)."""

    path: str
    data: Any
    marks: dict[KeyPath, tuple[int, int]] = field(default_factory=dict)

    def loc(self, *keypath: str | int) -> Location:
        """Location of `keypath`, or of its nearest written ancestor (the file itself at worst)."""
        path: KeyPath = tuple(keypath)
        while path:
            if path in self.marks:
                line, col = self.marks[path]
                return Location(self.path, line, col)
            path = path[:-1]
        return Location(self.path, 1, 1)


# libyaml's composer when PyYAML was built with it (nodes and marks are the same, about 10x faster).
_COMPOSER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_SCALARS = yaml.SafeLoader("")  # only its constructor is used, to type plain scalars the safe way
# Bounds on one document. Aliases make a few lines expand to billions of values (a "billion laughs"
# alias bomb) or to a cycle; a rule file needs a few hundred values at most.
MAX_TEXT = 4 * 1024 * 1024
MAX_VALUES = 100_000
MAX_DEPTH = 64


@dataclass
class _Limit:
    """Values left to build in this document."""

    values: int = MAX_VALUES


def _mark(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _build(
    node: yaml.Node, path: KeyPath, marks: dict[KeyPath, tuple[int, int]], display: str, limit: _Limit
) -> Any:
    limit.values -= 1
    if limit.values < 0 or len(path) > MAX_DEPTH:
        line, col = _mark(node)
        raise RuleError(
            f"document expands to more than {MAX_VALUES} values or {MAX_DEPTH} levels (YAML aliases?)",
            Location(display, line, col),
        )
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = _build(key_node, path, {}, display, limit)
            if not isinstance(key, str | int | bool) or key is None:
                line, col = _mark(key_node)
                raise RuleError(
                    f"mapping key must be a plain scalar, not {key!r}", Location(display, line, col)
                )
            if key in out:
                line, col = _mark(key_node)
                first = marks.get((*path, key), (0, 0))[0]
                raise RuleError(
                    f"duplicate key '{key}' (first written on line {first})", Location(display, line, col)
                )
            marks[(*path, key)] = _mark(key_node)
            out[key] = _build(value_node, (*path, key), marks, display, limit)
        return out
    if isinstance(node, yaml.SequenceNode):
        items = []
        for index, item in enumerate(node.value):
            marks[(*path, index)] = _mark(item)
            items.append(_build(item, (*path, index), marks, display, limit))
        return items
    return _SCALARS.construct_object(node, deep=True)


def load_text(text: str, display: str) -> Doc:
    """Load one YAML document from `text`; `display` names it in error locations."""
    if len(text) > MAX_TEXT:
        raise RuleError(f"file is over {MAX_TEXT // (1024 * 1024)} MiB, not a rule file", Location(display))
    try:
        node = yaml.compose(text, Loader=_COMPOSER)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = Location(display, mark.line + 1, mark.column + 1) if mark else Location(display)
        raise RuleError(f"YAML syntax: {exc.problem or exc.context}", where) from None
    except yaml.YAMLError as exc:  # e.g. several documents in one file
        raise RuleError(f"YAML: {exc}", Location(display)) from None
    marks: dict[KeyPath, tuple[int, int]] = {}
    data = None if node is None else _build(node, (), marks, display, _Limit())
    return Doc(display, data, marks)


def load_file(path: Path, display: str | None = None) -> Doc:
    """Load a YAML file; RuleError (with file, line, column) on unreadable or malformed input."""
    name = display or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RuleError(f"cannot read: {exc}", Location(name)) from None
    return load_text(text, name)
