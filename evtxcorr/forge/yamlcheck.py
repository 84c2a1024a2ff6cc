"""YAML data files of the forge, loaded with positions and checked against a small schema.

`load_checked` returns plain Python data; every problem (duplicate key, unknown key, missing key, wrong
type) is collected with its file, line, column and key path, then raised together as one ScenarioError.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from evtxcorr.errors import InputError, Location

KeyPath = tuple[str | int, ...]


class ScenarioError(InputError):
    """A forge data file (scenario, catalog, noise) is malformed. `problems` lists every one found."""

    def __init__(self, message: str, location: Location | None = None, problems: tuple[str, ...] = ()):
        super().__init__(message, location)
        self.problems = problems or (str(self),)


@dataclass
class Doc:
    """A loaded YAML file: its data and the (line, col) of every key and list item, by key path."""

    path: str
    data: Any
    marks: dict[KeyPath, tuple[int, int]]

    def where(self, key_path: KeyPath) -> Location:
        """Location of `key_path`, or of its nearest ancestor that has one."""
        for cut in range(len(key_path), -1, -1):
            mark = self.marks.get(key_path[:cut])
            if mark:
                return Location(self.path, mark[0], mark[1])
        return Location(self.path)


def dotted(key_path: KeyPath) -> str:
    """incidents[0].steps[2].at"""
    out = ""
    for part in key_path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top)"


def load_yaml(path: Path) -> tuple[Doc, list[tuple[KeyPath, str]]]:
    """Parse `path` into a Doc; duplicate keys come back as problems, not silently merged."""
    try:
        node = yaml.compose(path.read_text(encoding="utf-8"), Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        location = Location(str(path), mark.line + 1, mark.column + 1) if mark else Location(str(path))
        raise ScenarioError(f"not valid YAML: {getattr(exc, 'problem', exc)}", location) from exc
    except OSError as exc:
        raise ScenarioError(f"cannot read: {exc.strerror}", Location(str(path))) from exc
    marks: dict[KeyPath, tuple[int, int]] = {}
    problems: list[tuple[KeyPath, str]] = []
    constructor = yaml.SafeLoader("")
    data = _build(node, (), marks, problems, constructor) if node is not None else None
    return Doc(str(path), data, marks), problems


def _build(node: yaml.Node, key_path: KeyPath, marks: dict, problems: list, constructor: Any) -> Any:
    marks.setdefault(key_path, (node.start_mark.line + 1, node.start_mark.column + 1))
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        explicit: set[Any] = set()
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # '<<: *anchor' merges, explicit keys win
                merged = _build(value_node, key_path, {}, problems, constructor)
                for item in merged if isinstance(merged, list) else [merged]:
                    for k, v in (item or {}).items():
                        out.setdefault(k, v)
                continue
            key = constructor.construct_object(key_node, deep=True)
            child = (*key_path, key)
            marks[child] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            if key in explicit:
                problems.append((child, f"duplicate key '{key}'"))
            explicit.add(key)
            out[key] = _build(value_node, child, marks, problems, constructor)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [
            _build(item, (*key_path, i), marks, problems, constructor) for i, item in enumerate(node.value)
        ]
    return constructor.construct_object(node, deep=True)


# --- schema ---------------------------------------------------------------------------------------
# A schema is {key: (type, required)}. A type is a name from CHECKERS, a list ["list", item-type] or a
# nested schema dict (a mapping with those keys). "map:<type>" is a mapping of free keys to <type>.

Schema = dict[str, tuple[Any, bool]]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_range(value: Any) -> bool:
    """A number, a duration text ('90s', '2h30m') or a two-item [low, high] of those."""
    if isinstance(value, list):
        return len(value) == 2 and all(_is_number(v) or _is_duration(v) for v in value)
    return _is_number(value) or _is_duration(value)


def _is_duration(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        parse_duration(value)
    except ValueError:
        return False
    return True


CHECKERS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "str": (lambda v: isinstance(v, str), "a string"),
    "int": (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
    "number": (_is_number, "a number"),
    "bool": (lambda v: isinstance(v, bool), "true or false"),
    "time": (
        lambda v: isinstance(v, datetime) and v.tzinfo is not None,
        "a UTC timestamp like 2026-09-15T14:00:00Z",
    ),
    "duration": (lambda v: _is_number(v) or _is_duration(v), "seconds or a duration like '2h30m'"),
    "range": (_is_range, "seconds, a duration, or [low, high]"),
    "probability": (lambda v: _is_number(v) and 0 <= v <= 1, "a number from 0 to 1"),
    "any": (lambda v: True, "anything"),
    "scalar-or-list": (lambda v: not isinstance(v, dict), "a value or a list"),
}


def check(data: Any, schema: Any, key_path: KeyPath = ()) -> list[tuple[KeyPath, str]]:
    """Every way `data` departs from `schema`, as (key path, message)."""
    if isinstance(schema, dict):
        if not isinstance(data, dict):
            return [(key_path, "must be a mapping")]
        problems = [((*key_path, k), f"unknown key '{k}'") for k in data if k not in schema]
        for key, (sub, required) in schema.items():
            if key not in data:
                if required:
                    problems.append((key_path, f"missing required key '{key}'"))
                continue
            problems += check(data[key], sub, (*key_path, key))
        return problems
    if isinstance(schema, list):
        if not isinstance(data, list):
            return [(key_path, "must be a list")]
        return [p for i, item in enumerate(data) for p in check(item, schema[1], (*key_path, i))]
    if isinstance(schema, str) and schema.startswith("map:"):
        if not isinstance(data, dict):
            return [(key_path, "must be a mapping")]
        return [p for k, v in data.items() for p in check(v, schema[4:], (*key_path, k))]
    test, wanted = CHECKERS[schema]
    return [] if test(data) else [(key_path, f"must be {wanted}, got {data!r}")]


def raise_problems(doc: Doc, problems: list[tuple[KeyPath, str]]) -> None:
    """Raise one ScenarioError carrying every problem as 'file:line:col: key.path: message'."""
    if not problems:
        return
    lines = tuple(f"{doc.where(kp)}: {dotted(kp)}: {msg}" for kp, msg in problems)
    first_path, first_msg = problems[0]
    summary = f"{dotted(first_path)}: {first_msg}"
    if len(lines) > 1:
        summary += f" (and {len(lines) - 1} more problem(s): " + "; ".join(lines[1:]) + ")"
    raise ScenarioError(summary, doc.where(first_path), lines)


def load_checked(path: Path, schema: Schema) -> Doc:
    doc, problems = load_yaml(path)
    problems += check(doc.data, schema)
    raise_problems(doc, problems)
    return doc


_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1, "ms": 0.001}


def parse_duration(value: Any) -> float:
    """Seconds from a number or a text like '90', '45s', '2h30m', '1d6h', '250ms'."""
    if _is_number(value):
        return float(value)
    text = str(value).strip().replace(" ", "")
    if not text:
        raise ValueError("empty duration")
    total, number = 0.0, ""
    i = 0
    while i < len(text):
        ch = text[i]
        if ch.isdigit() or ch in ".-":
            number += ch
            i += 1
            continue
        unit = "ms" if text.startswith("ms", i) else ch
        if unit not in _UNITS or not number:
            raise ValueError(f"bad duration {value!r}")
        total += float(number) * _UNITS[unit]
        number = ""
        i += len(unit)
    if number:
        total += float(number)
    return total
