"""Sigma correlation rules (specification v2): parse with pySigma, evaluate over the matched rows.

A correlation names other rules (detections or correlations, by `name` or `id`) and says what must
happen among their matches, per `group-by` group, within `timespan`:

- event_count: the number of matched events in a window satisfies the condition;
- value_count: the number of distinct values of `condition.field` in a window satisfies it;
- temporal: the number of distinct referenced rules in a window satisfies it (default: all of them);
- temporal_ordered: all referenced rules in a window, in the listed order.

Windows start at each matched event and last `timespan` (inclusive). The rows of every window that
satisfies the condition become the correlation's matches (for temporal_ordered, the chain found), so a
cause can name the correlation as a detection and cite those rows. Times are the rows' own logged
times; `group-by: Computer` groups by host key (the short host name, as everywhere else).
Unsupported (an error naming file and line): value_sum / value_avg / value_percentile / value_median,
extended (string) conditions, a temporal_ordered condition other than all rules, group-by on a
multi-valued field (Data, Codes).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from sigma.correlations import (
    SigmaCorrelationCondition,
    SigmaCorrelationConditionOperator,
    SigmaCorrelationRule,
    SigmaCorrelationType,
)

from evtxcorr.ruleset.model import Detection, Issue, Settings
from evtxcorr.ruleset.yamlload import Doc

if TYPE_CHECKING:  # evaluation imports pandas when it runs: loading rules never needs it
    import pandas as pd

SUPPORTED_TYPES = {
    SigmaCorrelationType.EVENT_COUNT: "event_count",
    SigmaCorrelationType.VALUE_COUNT: "value_count",
    SigmaCorrelationType.TEMPORAL: "temporal",
    SigmaCorrelationType.TEMPORAL_ORDERED: "temporal_ordered",
}
OPERATORS: dict[SigmaCorrelationConditionOperator, Callable[[float, float], bool]] = {
    SigmaCorrelationConditionOperator.LT: operator.lt,
    SigmaCorrelationConditionOperator.LTE: operator.le,
    SigmaCorrelationConditionOperator.GT: operator.gt,
    SigmaCorrelationConditionOperator.GTE: operator.ge,
    SigmaCorrelationConditionOperator.EQ: operator.eq,
    SigmaCorrelationConditionOperator.NEQ: operator.ne,
}
ERROR_KEYS = {
    "SigmaCorrelationTypeError": ("correlation", "type"),
    "SigmaTimespanError": ("correlation", "timespan"),
    "SigmaCorrelationConditionError": ("correlation", "condition"),
}
MULTI_VALUED = frozenset({"data", "codes"})
HOST_COLUMN = "host"  # grouped by host_key instead, as every stage joins hosts


def common_fields(rule: Any) -> dict[str, Any]:
    """Detection fields every Sigma rule has: title, titles by language (title_<lang>), description, level."""
    extra = {
        key.removeprefix("title_"): str(value)
        for key, value in (rule.custom_attributes or {}).items()
        if key.startswith("title_")
    }
    return {
        "title": str(rule.title),
        "titles": {"en": str(rule.title), **extra},
        "description": str(rule.description or ""),
        "level": str(rule.level.name.lower() if rule.level else ""),
    }


def is_correlation(doc: Doc) -> bool:
    return isinstance(doc.data, dict) and doc.data.get("correlation") is not None


def _group_fields(rule: SigmaCorrelationRule) -> list[str]:
    """Every field a group-by or an alias resolves to (for the known-field check)."""
    fields = [f for f in rule.group_by or [] if f not in rule.aliases.aliases]
    for alias in rule.aliases:
        fields.extend(alias.mapping.values())
    return fields


def _problems(
    doc: Doc, rule: SigmaCorrelationRule, settings: Settings, known: Callable[[str], bool]
) -> list[Issue]:
    found = []

    def error(message: str, *keys: str) -> None:
        found.append(Issue("error", doc.loc(*keys), message, "sigma"))

    if rule.type not in SUPPORTED_TYPES:
        supported = ", ".join(SUPPORTED_TYPES.values())
        error(
            f"correlation type '{rule.type.name.lower()}' is not supported (supported: {supported})",
            "correlation",
            "type",
        )
    if not isinstance(rule.condition, SigmaCorrelationCondition):
        error("extended (expression) correlation conditions are not supported", "correlation", "condition")
    elif rule.type is SigmaCorrelationType.TEMPORAL_ORDERED and (
        rule.condition.op is not SigmaCorrelationConditionOperator.GTE
        or rule.condition.count != len(rule.rules or ())
    ):
        error(
            "a temporal_ordered correlation needs every rule, in order (leave out `condition`)",
            "correlation",
            "condition",
        )
    for name in _group_fields(rule):
        column = settings.fields.get(name)
        if column in MULTI_VALUED:
            error(f"group-by on the multi-valued field '{name}' is not supported", "correlation", "group-by")
        elif not known(name):
            error(f"unknown field '{name}' in group-by or aliases", "correlation", "group-by")
    field = rule.condition.fieldref if isinstance(rule.condition, SigmaCorrelationCondition) else None
    if isinstance(field, str) and not known(field):
        error(f"unknown field '{field}' in the condition", "correlation", "condition")
    return found


def correlation_from_doc(
    doc: Doc, settings: Settings, issues: list[Issue], known: Callable[[str], bool]
) -> Detection | None:
    """A Detection (kind 'correlation') from a correlation rule; its references resolve later."""
    rule = SigmaCorrelationRule.from_dict(doc.data, collect_errors=True)
    found = [
        Issue(
            "error",
            doc.loc(*ERROR_KEYS.get(type(e).__name__, ("correlation",))),
            f"Sigma: {e.args[0] if e.args else e}",
            "sigma",
        )
        for e in rule.errors
    ]
    if not found:
        found = _problems(doc, rule, settings, known)
    if not rule.name:
        found.append(
            Issue(
                "error", doc.loc(), "missing key 'name' (the evtxcorr short name of the correlation)", "sigma"
            )
        )
    issues.extend(found)
    if found:
        return None
    return Detection(
        name=str(rule.name),
        id=str(rule.id or ""),
        **common_fields(rule),
        path=doc.path,
        channels=(),
        rule=rule,
        kind="correlation",
        references=tuple(ref.reference for ref in rule.rules or ()),
    )


# --- evaluation --------------------------------------------------------------------------------


def _group_values(view: Any, field: str, pos: np.ndarray) -> pd.Series:
    """One value per row (None where absent or empty) of a single-valued field."""
    import pandas as pd

    if view.fields.get(field) == HOST_COLUMN:
        return pd.Series(view.array("host_key")[pos], dtype=object)
    owners, values, _numeric = view.values(field, pos)
    if owners is not None:  # a named payload value: the first one each row has
        first = pd.Series(values.to_numpy(), index=owners).groupby(level=0).first()
        values = pd.Series([first.get(p) for p in pos], dtype=object)
    values = values.astype(object).where(values.notna(), None)
    return values.map(lambda v: None if v is None or str(v) == "" else str(v).lower())


def _events(
    view: Any, rule: SigmaCorrelationRule, references: Sequence[str], hits: Mapping[str, np.ndarray]
) -> pd.DataFrame:
    """Matched events of the referenced rules: position, time (ns), rule index, group key, value."""
    import pandas as pd

    value_field = rule.condition.fieldref if rule.type is SigmaCorrelationType.VALUE_COUNT else None
    parts = []
    for index, name in enumerate(references):
        pos = np.asarray(hits.get(name, ()), dtype=np.int64)
        if not len(pos):
            continue
        part = pd.DataFrame({"pos": pos, "rule": index})
        part["ns"] = pd.Series(view.array("time")[pos]).to_numpy(dtype="datetime64[ns]").astype(np.int64)
        keys = []
        for field in rule.group_by or []:
            alias = rule.aliases.aliases.get(field)
            mapped = (
                next((f for ref, f in alias.mapping.items() if ref.reference == name), None)
                if alias
                else field
            )
            keys.append(
                _group_values(view, mapped, pos) if mapped else pd.Series([None] * len(pos), dtype=object)
            )
        part["group"] = list(zip(*keys, strict=True)) if keys else [()] * len(pos)
        part["value"] = (
            _group_values(view, value_field, pos).to_numpy() if isinstance(value_field, str) else None
        )
        parts.append(part)
    if not parts:
        return pd.DataFrame(columns=["pos", "rule", "ns", "group", "value"])
    events = pd.concat(parts, ignore_index=True)
    nat = np.iinfo(np.int64).min
    events = events[(events["ns"] != nat) & events["group"].map(lambda g: None not in g)]
    return events.sort_values(["ns", "pos"], kind="stable")


def _windows(group: pd.DataFrame, span_ns: int) -> list[tuple[int, int]]:
    """[start, end) row ranges of the group's windows, one starting at each event."""
    times = group["ns"].to_numpy()
    ends = np.searchsorted(times, times + span_ns, side="right")
    return list(zip(range(len(times)), ends.tolist(), strict=True))


def _ordered_chain(group: pd.DataFrame, start: int, end: int, count: int) -> list[int]:
    """Positions of rules 0..count-1 in order from row `start` (rule 0), within [start, end); [] if none."""
    rules, positions = group["rule"].to_numpy(), group["pos"].to_numpy()
    if rules[start] != 0:
        return []
    chain, want = [int(positions[start])], 1
    for row in range(start + 1, end):
        if want == count:
            break
        if rules[row] == want:
            chain.append(int(positions[row]))
            want += 1
    return chain if want == count else []


def evaluate_correlation(view: Any, detection: Detection, hits: Mapping[str, np.ndarray]) -> np.ndarray:
    """Row positions the correlation matches, given each referenced rule's matched positions."""
    rule: SigmaCorrelationRule = detection.rule
    condition: SigmaCorrelationCondition = rule.condition  # type: ignore[assignment]
    test = OPERATORS[condition.op]
    span_ns = int(rule.timespan.seconds * 1e9)
    events = _events(view, rule, detection.references, hits)
    marked: set[int] = set()
    for _key, group in events.groupby("group", sort=False):
        group = group.reset_index(drop=True)
        for start, end in _windows(group, span_ns):
            window = group.iloc[start:end]
            if rule.type is SigmaCorrelationType.TEMPORAL_ORDERED:
                marked.update(_ordered_chain(group, start, end, len(detection.references)))
                continue
            if rule.type is SigmaCorrelationType.EVENT_COUNT:
                count = len(window)
            elif rule.type is SigmaCorrelationType.VALUE_COUNT:
                count = window["value"].dropna().nunique()
            else:  # temporal: distinct rules present
                count = window["rule"].nunique()
            if test(count, condition.count):
                marked.update(int(p) for p in window["pos"])
    return np.array(sorted(marked), dtype=np.int64)
