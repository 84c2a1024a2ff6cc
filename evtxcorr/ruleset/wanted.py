"""Which (provider, event id) pairs a rule set can match: what selective parsing decodes.

Derived from the loaded detections' condition trees, so a team's `--rules DIR` detection on another
provider pulls its records in with no code change. The answer is an over-approximation: every record
a detection can match has a (provider, event id) among the pairs; a detection whose condition does
not pin both down to plain values (a wildcard, a `not`, a payload-only test) widens it, down to
"everything" (None), which turns selective parsing off.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from itertools import product

import numpy as np
from sigma.conditions import ConditionAND, ConditionFieldEqualsValueExpression, ConditionNOT, ConditionOR
from sigma.types import SigmaNumber, SigmaString

from evtxcorr.ruleset.model import Ruleset

ANY = None  # a pair element that is not pinned down
Pair = tuple[str | None, int | None]  # (lower-case provider, event id)
MAX_PAIRS = 4096  # an AND of large ORs: past this, keep the smaller side (still an over-approximation)


@dataclass(frozen=True)
class Wanted:
    """The pairs, indexed for the scanner: event id -> providers (None: any provider)."""

    pairs: frozenset[Pair]

    @cached_property
    def by_event_id(self) -> dict[int, frozenset[str] | None]:
        out: dict[int, set[str] | None] = {}
        for provider, event_id in self.pairs:
            if event_id is None:
                continue
            if provider is None or out.get(event_id, set()) is None:
                out[event_id] = None
            else:
                out.setdefault(event_id, set()).add(provider)  # type: ignore[union-attr]
        return {eid: (frozenset(p) if p is not None else None) for eid, p in out.items()}

    @cached_property
    def id_table(self) -> np.ndarray:
        """Boolean lookup by event id (0-65535): is the id in some pair?"""
        table = np.zeros(65536, dtype=bool)
        for _provider, event_id in self.pairs:
            if event_id is not None and 0 <= event_id <= 65535:
                table[event_id] = True
        return table

    @cached_property
    def any_event_id(self) -> frozenset[str]:
        """Providers wanted whatever the event id."""
        return frozenset(p for p, e in self.pairs if e is None and p is not None)


def _plain(value: object) -> str | None:
    if isinstance(value, SigmaString) and not value.contains_special():
        return str(value)
    return None


def _leaf(node: ConditionFieldEqualsValueExpression, fields: dict[str, str]) -> set[Pair] | None:
    column = fields.get(node.field or "")
    if column == "provider":
        text = _plain(node.value)
        return {(text.lower(), ANY)} if text is not None else None
    if column == "event_id":
        if isinstance(node.value, SigmaNumber):
            return {(ANY, int(node.value.number))}
        text = _plain(node.value)
        return {(ANY, int(text))} if text is not None and text.strip().isdigit() else None
    return None


def _meet(left: set[Pair], right: set[Pair]) -> set[Pair]:
    out: set[Pair] = set()
    for (p1, e1), (p2, e2) in product(left, right):
        if p1 is not None and p2 is not None and p1 != p2:
            continue
        if e1 is not None and e2 is not None and e1 != e2:
            continue
        out.add((p1 if p1 is not None else p2, e1 if e1 is not None else e2))
    return out


def _pairs(node: object, fields: dict[str, str]) -> set[Pair] | None:
    """The pairs a row must have to satisfy `node`; None when the node does not narrow them."""
    if isinstance(node, ConditionFieldEqualsValueExpression):
        return _leaf(node, fields)
    if isinstance(node, ConditionOR):
        union: set[Pair] = set()
        for child in node.args:
            found = _pairs(child, fields)
            if found is None:
                return None
            union |= found
        return union
    if isinstance(node, ConditionAND):
        result: set[Pair] | None = None
        for child in node.args:
            found = _pairs(child, fields)
            if found is None:
                continue
            if result is None:
                result = found
            elif len(result) * len(found) <= MAX_PAIRS:
                result = _meet(result, found)
            elif len(found) < len(result):
                result = found
        return result
    if isinstance(node, ConditionNOT):
        return None
    return None


def wanted_pairs(ruleset: Ruleset) -> Wanted | None:
    """The (provider, event id) pairs the rule set's detections can match, or None for 'any record'."""
    pairs: set[Pair] = set()
    for detection in ruleset.detections.values():
        if detection.kind != "rule":
            continue  # a correlation matches only rows its referenced detections matched
        tree = detection.rule.detection.parsed_condition[0].parsed
        found = _pairs(tree, dict(ruleset.settings.fields))
        if found is None or (ANY, ANY) in found:
            return None
        pairs |= found
    return Wanted(frozenset(pairs))
