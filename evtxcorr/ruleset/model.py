"""Typed rule model: settings, detections (Sigma), causes and their evidence, built from YAML docs.

Each `*_from_doc` builds one object from a loaded document and appends an Issue for every problem
it finds (unknown key, wrong type, bad value), so `rules check` can report them all at once. The key
tables below are the schema: rules/README.md documents the same keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evtxcorr import model
from evtxcorr.errors import Location
from evtxcorr.ruleset.yamlload import Doc

LANGS = ("en", "ja")
SCOPES = ("same-host", "other-nodes", "all-nodes", "any-host")
RELATIONS = ("before", "after", "around")
EXPECTS = ("present", "absent")
NODE_QUANTIFIERS = ("any", "every")


@dataclass(frozen=True)
class Issue:
    """One problem found in the rules: where, how bad ('error' | 'warning'), what, and which check."""

    severity: str
    location: Location
    message: str
    check: str = "schema"

    def __str__(self) -> str:
        return f"{self.location}: {self.message}"


@dataclass(frozen=True)
class Settings:
    """rules/settings.yaml: how Sigma maps onto the event table, and the default stage options."""

    logsources: dict[str, tuple[str, ...]]  # 'windows/system' -> channels
    fields: dict[str, str]  # Sigma field -> table column
    gap_s: float
    lookback_s: float
    lookahead_s: float
    skew_s: float
    threshold: float
    coverage_slack_s: float
    node_names: tuple[tuple[str, str], ...] = ()  # (detection, field) naming a cluster node
    payload_names: tuple[str, ...] = ()  # named payload fields rules may use (CONFIRMED names only)
    episode_gap_s: float = 1800.0  # a host's anchors of one cause further apart are separate episodes

    def merged(self, other: dict[str, Any]) -> Settings:
        """These settings with the keys of a later settings file laid over them."""
        values = {**self.__dict__, **other}
        return Settings(**values)


@dataclass(frozen=True)
class Detection:
    """One Sigma rule: the evtxcorr short name, its pySigma rule and the channels it reads."""

    name: str
    id: str
    title: str
    description: str
    level: str
    path: str
    channels: tuple[str, ...]
    rule: Any  # sigma.rule.SigmaRule
    titles: dict[str, str] = field(default_factory=dict)  # by language, from title / title_<lang>


@dataclass(frozen=True)
class EvidenceSpec:
    """What a cause looks for around its anchors, and what finding it (or not) is worth."""

    key: str
    detection: str
    role: str  # model.ROLES
    scope: str  # SCOPES
    relation: str  # RELATIONS
    within_s: float
    expect: str  # EXPECTS
    nodes: str  # NODE_QUANTIFIERS: for multi-node scopes, 'present' on any node or on every node
    weight: float
    description: dict[str, str]
    location: Location


@dataclass(frozen=True)
class Cause:
    """One diagnosis cause (rules/causes/<id>.yaml)."""

    id: str
    path: str
    title: dict[str, str]
    summary: dict[str, str]
    explanation: dict[str, str]
    remedy: dict[str, str]
    anchors: tuple[str, ...]
    prior: float
    evidence: tuple[EvidenceSpec, ...]
    cannot_show: dict[str, tuple[str, ...]]
    verify: tuple[str, ...]
    references: tuple[str, ...]
    fallback: bool = False  # reported only when no other cause explains the host's anchors
    examples: dict[str, tuple[str, ...]] = field(default_factory=dict)  # fires / quiet: scenario ids
    doc: Doc | None = field(default=None, compare=False, repr=False)

    def text(self) -> model.CauseText:
        return model.CauseText(
            title=dict(self.title),
            summary=dict(self.summary),
            explanation=dict(self.explanation),
            remedy=dict(self.remedy),
            cannot_show={lang: tuple(items) for lang, items in self.cannot_show.items()},
            evidence={spec.key: dict(spec.description) for spec in self.evidence},
            verify=self.verify,
            references=self.references,
        )


@dataclass(frozen=True)
class Ruleset:
    """Everything loaded from one or more rule folders."""

    settings: Settings
    detections: dict[str, Detection]
    causes: dict[str, Cause]
    dirs: tuple[Path, ...] = ()

    def cause_texts(self) -> dict[str, model.CauseText]:
        return {cause_id: cause.text() for cause_id, cause in self.causes.items()}

    def detection_titles(self, lang: str = "en") -> dict[str, str]:
        """Detection name -> title; `title_ja` (a Sigma custom attribute) gives the Japanese one."""
        return {
            name: detection.titles.get(lang, detection.title) for name, detection in self.detections.items()
        }

    def anchor_detections(self) -> frozenset[str]:
        return frozenset(name for cause in self.causes.values() for name in cause.anchors)


# --- building from documents -------------------------------------------------------------------


class _Reader:
    """Typed access to a document's values; every problem becomes an Issue with its location."""

    def __init__(self, doc: Doc, issues: list[Issue]) -> None:
        self.doc = doc
        self.issues = issues

    def error(self, message: str, *keypath: str | int) -> None:
        self.issues.append(Issue("error", self.doc.loc(*keypath), message))

    def mapping(self, value: Any, allowed: dict[str, bool], *keypath: str | int) -> dict[str, Any]:
        """`value` as a mapping; `allowed` maps each key to whether it is required."""
        where = ".".join(str(k) for k in keypath) or "the document"
        if not isinstance(value, dict):
            self.error(f"{where} must be a mapping", *keypath)
            return {}
        for key in value:
            if key not in allowed:
                known = ", ".join(sorted(allowed))
                self.error(f"unknown key '{key}' (known: {known})", *keypath, key)
        for key, required in allowed.items():
            if required and key not in value:
                self.error(f"missing key '{key}'", *keypath)
        return value

    def string(self, value: Any, *keypath: str | int, default: str = "") -> str:
        if value is None:
            return default
        if not isinstance(value, str) or not value.strip():
            self.error("must be a non-empty string", *keypath)
            return default
        return value

    def number(self, value: Any, lo: float, hi: float, *keypath: str | int, default: float = 0.0) -> float:
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
            self.error(f"must be a number from {lo:g} to {hi:g}", *keypath)
            return default
        return float(value)

    def choice(self, value: Any, choices: tuple[str, ...], *keypath: str | int, default: str = "") -> str:
        if value is None:
            return default
        if value not in choices:
            self.error(f"'{value}' is not one of: {', '.join(choices)}", *keypath)
            return default
        return str(value)

    def strings(self, value: Any, *keypath: str | int) -> tuple[str, ...]:
        if value is None:
            return ()
        if not isinstance(value, list):
            self.error("must be a list of strings", *keypath)
            return ()
        return tuple(self.string(item, *keypath, index) for index, item in enumerate(value))

    def texts(self, value: Any, *keypath: str | int) -> dict[str, str]:
        value = self.mapping(value, dict.fromkeys(LANGS, True), *keypath)
        return {lang: self.string(value.get(lang), *keypath, lang) for lang in LANGS if lang in value}

    def text_lists(self, value: Any, *keypath: str | int) -> dict[str, tuple[str, ...]]:
        value = self.mapping(value, dict.fromkeys(LANGS, True), *keypath)
        return {lang: self.strings(value.get(lang), *keypath, lang) for lang in LANGS if lang in value}


SETTINGS_KEYS = {
    "logsources": False,
    "fields": False,
    "correlate": False,
    "diagnose": False,
    "node_names": False,
    "payload_names": False,
}
CORRELATE_KEYS = {"gap_s": False, "lookback_s": False, "lookahead_s": False, "skew_s": False}
DIAGNOSE_KEYS = {"threshold": False, "coverage_slack_s": False, "episode_gap_s": False}
DAY_S = 86400.0


def settings_overrides(doc: Doc, issues: list[Issue]) -> dict[str, Any]:
    """The keys one settings file sets, as Settings field values (later files override earlier)."""
    read = _Reader(doc, issues)
    top = read.mapping(doc.data, SETTINGS_KEYS)
    out: dict[str, Any] = {}
    if "logsources" in top:
        sources = read.mapping(top["logsources"], {k: False for k in top["logsources"] or {}}, "logsources")
        out["logsources"] = {name: read.strings(chans, "logsources", name) for name, chans in sources.items()}
    if "fields" in top:
        fields = read.mapping(top["fields"], {k: False for k in top["fields"] or {}}, "fields")
        out["fields"] = {name: read.string(col, "fields", name) for name, col in fields.items()}
    for section, keys, hi in (("correlate", CORRELATE_KEYS, DAY_S), ("diagnose", DIAGNOSE_KEYS, DAY_S)):
        if section in top:
            values = read.mapping(top[section], keys, section)
            for key, value in values.items():
                limit = 1.0 if key == "threshold" else hi
                out[key] = read.number(value, 0, limit, section, key)
    if "payload_names" in top:
        out["payload_names"] = read.strings(top["payload_names"], "payload_names")
    if "node_names" in top:
        items = top["node_names"] if isinstance(top["node_names"], list) else []
        pairs = []
        for index, item in enumerate(items):
            entry = read.mapping(item, {"detection": True, "field": True}, "node_names", index)
            pairs.append(
                (
                    read.string(entry.get("detection"), "node_names", index, "detection"),
                    read.string(entry.get("field"), "node_names", index, "field"),
                )
            )
        out["node_names"] = tuple(pairs)
    return out


CAUSE_KEYS = {
    "id": True,
    "title": True,
    "summary": True,
    "explanation": True,
    "remedy": True,
    "anchors": True,
    "confidence": True,
    "evidence": True,
    "cannot_show": True,
    "verify": True,
    "references": False,
    "fallback": False,
    "examples": False,
}
EVIDENCE_KEYS = {
    "key": True,
    "detection": True,
    "role": True,
    "scope": True,
    "relation": True,
    "within_s": True,
    "expect": True,
    "nodes": False,
    "weight": True,
    "description": True,
}


def evidence_from_dict(read: _Reader, value: Any, index: int) -> EvidenceSpec:
    at = ("evidence", index)
    item = read.mapping(value, EVIDENCE_KEYS, *at)
    return EvidenceSpec(
        key=read.string(item.get("key"), *at, "key"),
        detection=read.string(item.get("detection"), *at, "detection"),
        role=read.choice(item.get("role"), model.ROLES, *at, "role", default="supporting"),
        scope=read.choice(item.get("scope"), SCOPES, *at, "scope", default="same-host"),
        relation=read.choice(item.get("relation"), RELATIONS, *at, "relation", default="around"),
        within_s=read.number(item.get("within_s"), 0, DAY_S, *at, "within_s"),
        expect=read.choice(item.get("expect"), EXPECTS, *at, "expect", default="present"),
        nodes=read.choice(item.get("nodes"), NODE_QUANTIFIERS, *at, "nodes", default="any"),
        weight=read.number(item.get("weight"), 0, 1, *at, "weight"),
        description=read.texts(item.get("description"), *at, "description"),
        location=read.doc.loc(*at),
    )


def cause_from_doc(doc: Doc, issues: list[Issue]) -> Cause:
    read = _Reader(doc, issues)
    top = read.mapping(doc.data, CAUSE_KEYS)
    confidence = read.mapping(top.get("confidence", {}), {"prior": True}, "confidence")
    evidence = top.get("evidence")
    if not isinstance(evidence, list) or not evidence:
        read.error("evidence must be a non-empty list", "evidence")
        evidence = []
    examples = read.mapping(top.get("examples", {}), {"fires": False, "quiet": False}, "examples")
    fallback = top.get("fallback", False)
    if not isinstance(fallback, bool):
        read.error("must be true or false", "fallback")
    return Cause(
        id=read.string(top.get("id"), "id"),
        path=doc.path,
        title=read.texts(top.get("title"), "title"),
        summary=read.texts(top.get("summary"), "summary"),
        explanation=read.texts(top.get("explanation"), "explanation"),
        remedy=read.texts(top.get("remedy"), "remedy"),
        anchors=read.strings(top.get("anchors"), "anchors"),
        prior=read.number(confidence.get("prior"), 0, 1, "confidence", "prior"),
        evidence=tuple(evidence_from_dict(read, item, index) for index, item in enumerate(evidence)),
        cannot_show=read.text_lists(top.get("cannot_show"), "cannot_show"),
        verify=read.strings(top.get("verify"), "verify"),
        references=read.strings(top.get("references"), "references"),
        fallback=fallback is True,
        examples={kind: read.strings(ids, "examples", kind) for kind, ids in examples.items()},
        doc=doc,
    )
