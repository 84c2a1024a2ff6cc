"""Sigma detections: parse with pySigma, then evaluate them ourselves over the event table.

With correlation.py, the only modules that import pySigma. A rule's postprocessed condition tree (AND/OR/NOT over
field = value leaves, with `1 of x*` / `all of them` already expanded by pySigma) becomes boolean
numpy masks. AND narrows the rows its later children look at, cheapest child (EventID) first, so a
string test only ever runs on the few rows with the right event id. Values compare as Sigma says:
strings case-insensitively with * and ? wildcards, `re` as an unanchored regular-expression search,
numbers numerically.

Field names resolve through settings `fields` (Sigma name -> table column); `paramN` is the Nth
payload value (1-based, like %N); any other name is a named payload value (<Data Name=..> or a
UserData element), matched by name.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np
from sigma.conditions import ConditionAND, ConditionFieldEqualsValueExpression, ConditionNOT, ConditionOR
from sigma.exceptions import SigmaError
from sigma.rule import SigmaDetection, SigmaDetectionItem, SigmaRule
from sigma.types import SigmaNull, SigmaNumber, SigmaRegularExpression, SigmaString, SpecialChars

from evtxcorr.errors import Location
from evtxcorr.ruleset import correlation
from evtxcorr.ruleset.model import Detection, Issue, Settings
from evtxcorr.ruleset.yamlload import Doc

if TYPE_CHECKING:  # evaluation imports pandas when it runs: loading rules (and parsing) never needs it
    import pandas as pd

# `i`, `m`, `s`: the regular-expression flags (ignore case, multi-line, dot matches newline).
SUPPORTED_MODIFIERS = frozenset({"contains", "startswith", "endswith", "re", "i", "m", "s", "all"})
SUPPORTED_VALUES = (SigmaString, SigmaNumber, SigmaRegularExpression, SigmaNull)
MULTI_VALUED = frozenset({"data", "codes"})  # tuple columns: a value matches if any element does
PAYLOAD_COLUMNS = frozenset({"data", "binary", "codes"})  # what an export without payload cannot tell
NUMERIC = frozenset({"event_id", "level", "record_id", "qualifiers", "task", "opcode", "version"})
PARAM = re.compile(r"param([1-9][0-9]*)\Z")

# pySigma error class -> the rule key the error is about (for the location we report).
ERROR_KEYS: dict[str, tuple[str, ...]] = {
    "SigmaIdentifierError": ("id",),
    "SigmaTitleError": ("title",),
    "SigmaLevelError": ("level",),
    "SigmaStatusError": ("status",),
    "SigmaDateError": ("date",),
    "SigmaModifiedError": ("modified",),
    "SigmaLogsourceError": ("logsource",),
    "SigmaNameError": ("name",),
    "SigmaReferencesError": ("references",),
    "SigmaTagError": ("tags",),
    "SigmaAuthorError": ("author",),
    "SigmaDescriptionError": ("description",),
    "SigmaConditionError": ("detection", "condition"),
}


# --- loading -----------------------------------------------------------------------------------


def _error_issue(doc: Doc, error: SigmaError) -> Issue:
    """An Issue at the key a pySigma error is about: the key using the modifier it names, or by class."""
    text = f"Sigma: {error.args[0] if error.args else error}"
    named = re.search(r"\b(Sigma\w+Modifier)\b", text)
    if named:
        from sigma.modifiers import reverse_modifier_mapping

        modifier = reverse_modifier_mapping.get(named.group(1))
        if modifier:
            where = _find_key(doc, lambda key: f"|{modifier}" in key)
            return Issue("error", where, f"modifier '{modifier}': {text}", "sigma")
    keys = ERROR_KEYS.get(type(error).__name__, ("detection",))
    return Issue("error", doc.loc(*keys), text, "sigma")


def _detection_items(detection: SigmaDetection) -> list[SigmaDetectionItem]:
    items: list[SigmaDetectionItem] = []
    for item in detection.detection_items:
        items.extend(_detection_items(item) if isinstance(item, SigmaDetection) else [item])
    return items


def _find_key(doc: Doc, predicate: Any) -> Location:
    """Location of the first key under `detection` whose name satisfies `predicate`."""
    for path in doc.marks:
        if len(path) > 1 and path[0] == "detection" and isinstance(path[-1], str) and predicate(path[-1]):
            return doc.loc(*path)
    return doc.loc("detection")


def _known_field(name: str, settings: Settings) -> bool:
    return name in settings.fields or bool(PARAM.match(name)) or name in settings.payload_names


def _item_issues(doc: Doc, rule: SigmaRule, settings: Settings, check: str) -> list[Issue]:
    issues: list[Issue] = []
    for name, detection in rule.detection.detections.items():
        for item in _detection_items(detection):
            for modifier in item.modifiers:
                if _is_supported(modifier):
                    continue
                mod = _modifier_id(modifier)
                where = _find_key(doc, lambda key, mod=mod: f"|{mod}" in key)
                supported = ", ".join(sorted(SUPPORTED_MODIFIERS))
                issues.append(
                    Issue(
                        "error",
                        where,
                        f"modifier '{mod}' is not supported by evtxcorr (supported: {supported})",
                        check,
                    )
                )
            for value in item.value:
                if not isinstance(value, SUPPORTED_VALUES):
                    where = _find_key(doc, lambda key, f=item.field: key.split("|")[0] == f)
                    issues.append(
                        Issue(
                            "error",
                            where,
                            f"value type {type(value).__name__} is not "
                            "supported (strings, numbers, regular expressions, null)",
                            check,
                        )
                    )
            if item.field is None:
                where = doc.loc("detection", name)
                issues.append(Issue("error", where, "keyword (field-less) values are not supported", check))
            elif not _known_field(item.field, settings):
                where = _find_key(doc, lambda key, f=item.field: key.split("|")[0] == f)
                issues.append(
                    Issue(
                        "error",
                        where,
                        f"unknown field '{item.field}': not in settings fields or payload_names, and "
                        "not paramN (a misspelt field would match nothing, or everything under `not`)",
                        check,
                    )
                )
    return issues


def _is_supported(modifier: type) -> bool:
    from sigma.modifiers import modifier_mapping

    return any(modifier_mapping.get(name) is modifier for name in SUPPORTED_MODIFIERS)


def _modifier_id(modifier: type) -> str:
    from sigma.modifiers import reverse_modifier_mapping

    return reverse_modifier_mapping.get(modifier.__name__, modifier.__name__)


def _logsource_key(rule: SigmaRule) -> str:
    return f"{rule.logsource.product}/{rule.logsource.service}"


def _channels(doc: Doc, rule: SigmaRule, settings: Settings, issues: list[Issue]) -> tuple[str, ...]:
    source = rule.logsource
    key = _logsource_key(rule)
    if source.category or key not in settings.logsources:
        known = ", ".join(sorted(settings.logsources))
        issues.append(
            Issue(
                "error",
                doc.loc("logsource"),
                f"logsource '{key}' (category "
                f"{source.category!r}) is not mapped in settings.yaml (known: {known})",
                "sigma",
            )
        )
        return ()
    return settings.logsources[key]


def detection_from_doc(doc: Doc, settings: Settings, issues: list[Issue]) -> Detection | None:
    """A Detection from a Sigma rule document, or None when pySigma cannot build the rule."""
    if not isinstance(doc.data, dict):
        issues.append(Issue("error", doc.loc(), "a Sigma rule must be a mapping", "sigma"))
        return None
    if correlation.is_correlation(doc):
        return correlation.correlation_from_doc(doc, settings, issues, lambda f: _known_field(f, settings))
    rule = SigmaRule.from_dict(doc.data, collect_errors=True)
    found = [_error_issue(doc, error) for error in rule.errors]
    if not found:
        try:
            conditions = [c.parsed for c in rule.detection.parsed_condition]
            if len(conditions) != 1 or conditions[0] is None:
                found.append(
                    Issue(
                        "error",
                        doc.loc("detection", "condition"),
                        "exactly one condition is supported",
                        "sigma",
                    )
                )
        except SigmaError as exc:
            found.append(Issue("error", doc.loc("detection", "condition"), f"Sigma: {exc.args[0]}", "sigma"))
    if not found:
        found.extend(_item_issues(doc, rule, settings, "sigma"))
    if not rule.name:
        found.append(
            Issue(
                "error",
                doc.loc(),
                "missing key 'name' (the evtxcorr short name of the detection, referenced by causes)",
                "sigma",
            )
        )
    channels = _channels(doc, rule, settings, found) if not rule.errors else ()
    issues.extend(found)
    if any(i.severity == "error" for i in found):
        return None
    return Detection(
        name=str(rule.name),
        id=str(rule.id),
        **correlation.common_fields(rule),
        path=doc.path,
        channels=channels,
        rule=rule,
        providers=tuple(
            p.lower() for p in settings.logsource_providers.get(_logsource_key(rule), ()) if channels
        ),
    )


# --- evaluation --------------------------------------------------------------------------------


class FrameView:
    """Column access for rule evaluation, by row position; caches the whole-frame arrays."""

    def __init__(self, frame: pd.DataFrame, settings: Settings) -> None:
        self.frame = frame
        self.fields = settings.fields
        self._arrays: dict[str, np.ndarray] = {}
        self._payload_unknown: np.ndarray | None = None

    def payload_unknown(self) -> np.ndarray:
        """Positions of rows whose input carried no payload values (model.EXPORT_FIELDS payload_known)."""
        if self._payload_unknown is None:
            known = self.frame.get("payload_known")  # absent in tables built without exports
            unknown = known.eq(False).to_numpy(dtype=bool) if known is not None else np.zeros(0, dtype=bool)
            self._payload_unknown = np.flatnonzero(unknown)  # only an explicit False: None is not a claim
        return self._payload_unknown

    def array(self, column: str) -> np.ndarray:
        if column not in self._arrays:
            self._arrays[column] = self.frame[column].to_numpy()
        return self._arrays[column]

    def numbers(self, column: str) -> np.ndarray:
        """A numeric column as float64 (NaN where empty), for direct numpy comparison."""
        key = f"#{column}"
        if key not in self._arrays:
            import pandas as pd

            numeric = pd.to_numeric(self.frame[column], errors="coerce")
            self._arrays[key] = numeric.to_numpy(dtype="float64", na_value=np.nan)
        return self._arrays[key]

    def values(self, field: str, pos: np.ndarray) -> tuple[np.ndarray | None, pd.Series, bool]:
        """(owner positions or None, values, numeric) of `field` for the rows at `pos`.

        Owners is None when each row has exactly one value (aligned with `pos`); otherwise values
        are the exploded elements and owners[i] the row position each came from.
        """
        import pandas as pd

        column = self.fields.get(field)
        if column in MULTI_VALUED:
            return _explode(self.array(column), pos)
        if column is not None:
            values = pd.Series(self.array(column)[pos], dtype=object)
            return None, values, column in NUMERIC
        param = PARAM.match(field)
        data = pd.Series(self.array("data")[pos], dtype=object)
        if param:
            return None, data.str.get(int(param.group(1)) - 1), False
        names = pd.Series(self.array("data_names")[pos], dtype=object)
        pairs = pd.DataFrame({"owner": pos, "value": data, "name": names}).explode(["value", "name"])
        pairs = pairs[pairs["name"] == field]
        return pairs["owner"].to_numpy(dtype=np.int64), pairs["value"].reset_index(drop=True), False


def _explode(column: np.ndarray, pos: np.ndarray) -> tuple[np.ndarray, pd.Series, bool]:
    import pandas as pd

    exploded = pd.Series(column[pos], index=pos, dtype=object).explode()
    exploded = exploded[exploded.notna()]
    return exploded.index.to_numpy(dtype=np.int64), exploded.reset_index(drop=True), False


def _missing(value: object) -> bool:
    """What pandas' isna() says of one value (None, NaN, NA, NaT), for any value."""
    import pandas as pd

    return value is None or (pd.api.types.is_scalar(value) and bool(pd.isna(value)))


def _mask(hits: Iterable[bool], count: int) -> np.ndarray:
    return np.fromiter(hits, dtype=bool, count=count)


# The tests below run Python's string methods over the values of one leaf (a few hundred): the same
# answers as pandas' .str methods (None where a value is missing or not text), without their cost per
# call (about ten pandas operations a leaf). `texts`: one value per row, None where there is none.
def _string_test(texts: list[str | None], value: SigmaString) -> np.ndarray:
    parts = value.s
    multi = SpecialChars.WILDCARD_MULTI
    if not value.contains_special():
        plain = value.to_plain_regex().lower()
        hits = (t is not None and t.lower() == plain for t in texts)
    elif len(parts) == 3 and parts[0] is multi and parts[2] is multi and isinstance(parts[1], str):
        inner = parts[1].lower()
        hits = (t is not None and inner in t.lower() for t in texts)
    elif len(parts) == 2 and isinstance(parts[0], str) and parts[1] is multi:
        head = parts[0].lower()
        hits = (t is not None and t.lower().startswith(head) for t in texts)
    elif len(parts) == 2 and parts[0] is multi and isinstance(parts[1], str):
        tail = parts[1].lower()
        hits = (t is not None and t.lower().endswith(tail) for t in texts)
    else:
        pattern = re.compile(value.to_regex().regexp.to_plain_regex(), re.IGNORECASE | re.DOTALL)
        hits = (t is not None and pattern.fullmatch(t) is not None for t in texts)
    return _mask(hits, len(texts))


def _regex_test(texts: list[str | None], value: SigmaRegularExpression) -> np.ndarray:
    flags = 0
    for flag in value.flags:
        flags |= SigmaRegularExpression.sigma_to_python_flags[flag]
    pattern = re.compile(value.regexp.to_plain_regex(), flags)
    return _mask((t is not None and pattern.search(t) is not None for t in texts), len(texts))


def _value_test(values: pd.Series, value: Any, numeric: bool) -> np.ndarray:
    if isinstance(value, SigmaNumber) and numeric:
        import pandas as pd

        return pd.to_numeric(values, errors="coerce").eq(value.number).to_numpy(dtype=bool)
    if isinstance(value, SigmaNumber):
        value = SigmaString(str(value.number))
    items = values.tolist()
    if isinstance(value, SigmaNull):  # missing or empty
        return _mask((v == "" if isinstance(v, str) else _missing(v) for v in items), len(items))
    if numeric:
        items = [None if _missing(v) else str(v) for v in items]
    # text only; an empty value is absent (only `null` matches it)
    texts = [v if isinstance(v, str) and v else None for v in items]
    if isinstance(value, SigmaString):
        return _string_test(texts, value)
    if isinstance(value, SigmaRegularExpression):
        return _regex_test(texts, value)
    raise TypeError(f"value type {type(value).__name__} is not supported")


def _leaf(view: FrameView, node: ConditionFieldEqualsValueExpression, pos: np.ndarray) -> np.ndarray:
    column = view.fields.get(node.field)
    if column in NUMERIC and isinstance(node.value, SigmaNumber):  # fast path: EventID: 5719
        return view.numbers(column)[pos] == float(node.value.number)
    owners, values, numeric = view.values(node.field, pos)
    hits = _value_test(values, node.value, numeric) if len(values) else np.zeros(0, dtype=bool)
    if owners is None:
        return hits
    if isinstance(node.value, SigmaNull):  # null: the row has no non-empty value for the field
        return ~np.isin(pos, owners[~hits])
    return np.isin(pos, owners[hits])


def _cost(node: Any, view: FrameView) -> int:
    if isinstance(node, ConditionFieldEqualsValueExpression):
        column = view.fields.get(node.field)
        if column in NUMERIC:
            return 0
        return 1 if column is not None else 2
    return 3


def evaluate_node(view: FrameView, node: Any, pos: np.ndarray) -> np.ndarray:
    """Boolean mask over `pos` (row positions) for one condition-tree node."""
    if isinstance(node, ConditionAND):
        keep = np.ones(len(pos), dtype=bool)
        for child in sorted(node.args, key=lambda c: _cost(c, view)):
            live = np.flatnonzero(keep)
            if live.size == 0:
                break
            keep[live] = evaluate_node(view, child, pos[live])
        return keep
    if isinstance(node, ConditionOR):
        hit = np.zeros(len(pos), dtype=bool)
        for child in node.args:
            open_ = np.flatnonzero(~hit)
            if open_.size == 0:
                break
            hit[open_] = evaluate_node(view, child, pos[open_])
        return hit
    if isinstance(node, ConditionNOT):
        return ~evaluate_node(view, node.args[0], pos)
    if isinstance(node, ConditionFieldEqualsValueExpression):
        return _leaf(view, node, pos)
    raise TypeError(f"condition element {type(node).__name__} is not supported")


def _in_logsource(view: FrameView, detection: Detection, pos: np.ndarray) -> np.ndarray:
    """The positions among `pos` whose channel is the detection's logsource (or, for a row that lost
    its channel, whose provider writes to it)."""
    if not detection.channels or not len(pos):
        return pos
    import pandas as pd

    channel = pd.Series(view.array("channel")[pos], dtype=object).fillna("")
    keep = channel.isin(detection.channels)
    lost = channel == ""  # an export that lost the channel: the provider must belong to the logsource
    if lost.any():
        provider = pd.Series(view.array("provider")[pos], dtype=object).fillna("").str.lower()
        keep |= lost & provider.isin(detection.providers)
    return pos[keep.to_numpy(dtype=bool)]


def evaluate(view: FrameView, detection: Detection, candidates: np.ndarray | None = None) -> np.ndarray:
    """Row positions (into view.frame) that `detection` matches, among `candidates` (default all)."""
    pos = np.arange(len(view.frame)) if candidates is None else candidates
    tree = detection.rule.detection.parsed_condition[0].parsed
    pos = pos[evaluate_node(view, tree, pos)] if len(pos) else pos
    return _in_logsource(view, detection, pos)  # after the tree: the event id has narrowed the rows


def _is_payload(field: str | None, view: FrameView) -> bool:
    """Does this Sigma field read the payload (paramN, a named value, Data, Binary, Codes)?"""
    column = view.fields.get(field) if field else None
    return column in PAYLOAD_COLUMNS if column is not None else True


def _kleene(view: FrameView, node: Any, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(surely, possibly) masks over `pos`, rows whose payload is unknown: a payload test is neither true
    nor false there, and AND, OR, NOT combine that as Kleene's three-valued logic does."""
    if isinstance(node, ConditionAND | ConditionOR):
        both = node.__class__ is ConditionAND
        surely = np.full(len(pos), both)
        possibly = np.full(len(pos), both)
        for child in node.args:
            child_surely, child_possibly = _kleene(view, child, pos)
            surely = surely & child_surely if both else surely | child_surely
            possibly = possibly & child_possibly if both else possibly | child_possibly
        return surely, possibly
    if isinstance(node, ConditionNOT):
        surely, possibly = _kleene(view, node.args[0], pos)
        return ~possibly, ~surely
    if isinstance(node, ConditionFieldEqualsValueExpression):
        if _is_payload(node.field, view):
            return np.zeros(len(pos), dtype=bool), np.ones(len(pos), dtype=bool)
        hits = _leaf(view, node, pos)
        return hits, hits.copy()
    raise TypeError(f"condition element {type(node).__name__} is not supported")


def evaluate_unknown(view: FrameView, detection: Detection) -> tuple[np.ndarray, np.ndarray]:
    """(positions `detection` surely matches, positions it may match). A row from an export without
    payload (Event Viewer CSV, PowerShell Export-Csv) may match when its provider, event id and channel
    fit and only the payload could decide: such rows can anchor an incident, and the evidence they
    give stays 'unknown' (payload not checked), never present or absent."""
    surely = evaluate(view, detection)
    unknown = view.payload_unknown()
    if not len(unknown):
        return surely, np.zeros(0, dtype=np.int64)
    tree = detection.rule.detection.parsed_condition[0].parsed
    kleene_surely, kleene_possibly = _kleene(view, tree, unknown)
    surely = np.union1d(np.setdiff1d(surely, unknown), _in_logsource(view, detection, unknown[kleene_surely]))
    maybe = _in_logsource(view, detection, unknown[kleene_possibly & ~kleene_surely])
    return surely, maybe
