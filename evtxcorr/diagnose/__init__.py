"""Stage 5: name causes for each incident, per host, with a confidence and the evidence behind it.

For each incident and cause, every host with one of the cause's anchors in the incident is a
candidate. Each evidence item of the cause is looked for around that host's anchors (see
rules/README.md for scope, relation and the node set) and scored by score.py. Findings at or above
the threshold whose required evidence was all seen are reported; the others go to `rejected`, so
the report can say what was ruled out. A `fallback` cause (unknown-auth-failure) is dropped for a
host that another cause already explains.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from evtxcorr.diagnose import score
from evtxcorr.diagnose.coverage import Coverage
from evtxcorr.model import Evidence, Finding, Incident
from evtxcorr.ruleset import Cause, EvidenceSpec, Ruleset

__all__ = ["Coverage", "diagnose", "node_set"]

NOTE_UNKNOWN = "evidence.unknown_missing_log"
NOTE_NOT_EVERY = "evidence.not_on_every_node"
NOTE_VETO = "evidence.required_not_met"
NOTE_ANCHOR = "evidence.anchor"  # key 'anchor:<detection>': the rows that made the host a candidate


@dataclass(frozen=True)
class _Hits:
    """One entry per (frame row, detection it matched) in an incident, as parallel numpy arrays."""

    row: np.ndarray  # frame index labels
    ns: np.ndarray  # time, int64 nanoseconds since the epoch (UTC)
    host: np.ndarray  # host_key
    detection: np.ndarray

    @classmethod
    def of(cls, frame: pd.DataFrame, rows: tuple[int, ...], signals: Mapping[int, tuple[str, ...]]) -> _Hits:
        names = [signals.get(row, ()) for row in rows]
        repeat = np.array([len(n) for n in names], dtype=np.int64)
        times = frame.loc[list(rows), "time"].to_numpy(dtype="datetime64[ns]").astype(np.int64)
        hosts = frame.loc[list(rows), "host_key"].to_numpy(dtype=object)
        return cls(
            row=np.repeat(np.asarray(rows, dtype=np.int64), repeat),
            ns=np.repeat(times, repeat),
            host=np.repeat(hosts, repeat),
            detection=np.array([name for group in names for name in group], dtype=object),
        )


@dataclass(frozen=True)
class _Context:
    """What evaluating one incident needs: its hits, the node set, coverage, channels, skew."""

    hits: _Hits
    nodes: frozenset[str]
    coverage: Coverage
    channels: Mapping[str, tuple[str, ...]]
    skew_ns: int


def node_set(frame: pd.DataFrame, signals: Mapping[int, tuple[str, ...]], ruleset: Ruleset) -> frozenset[str]:
    """Hosts with logs in the table, plus hosts named by position in cluster events (settings)."""
    nodes = set(frame["host_key"].dropna().unique()) if not frame.empty else set()
    for detection, field in ruleset.settings.node_names:
        if not field.startswith("param"):
            continue
        rows = [row for row, names in signals.items() if detection in names]
        if rows:
            named = frame.loc[rows, "data"].str.get(int(field[5:]) - 1).dropna().astype(str)
            nodes.update(name.split(".")[0].strip().lower() for name in named if name.strip())
    return frozenset(nodes)


def _window(spec: EvidenceSpec, first: int, last: int, skew_ns: int) -> tuple[int, int]:
    """[lo, hi] in ns where `spec` looks, from the candidate's first and last anchor times."""
    reach = int(spec.within_s * 1e9)
    lo = first - reach if spec.relation in ("before", "around") else first
    hi = last + reach if spec.relation in ("after", "around") else last
    if spec.scope != "same-host":  # other hosts' clocks may be off by up to the skew tolerance
        lo, hi = lo - skew_ns, hi + skew_ns
    return lo, hi


def _scope_hosts(spec: EvidenceSpec, host: str, ctx: _Context) -> list[str]:
    if spec.scope == "same-host":
        return [host]
    if spec.scope == "other-nodes":
        return sorted(ctx.nodes - {host})
    if spec.scope == "all-nodes":
        return sorted(ctx.nodes | {host})
    return sorted(ctx.nodes | {host} | set(ctx.hits.host.tolist()))  # any-host


def _evidence(spec: EvidenceSpec, host: str, first: int, last: int, ctx: _Context) -> Evidence:
    lo, hi = _window(spec, first, last, ctx.skew_ns)
    hits = ctx.hits
    found = (hits.detection == spec.detection) & (hits.ns >= lo) & (hits.ns <= hi)
    seen_on = set(hits.host[found].tolist())
    channels = ctx.channels.get(spec.detection, ())
    span = (pd.Timestamp(lo, tz="UTC"), pd.Timestamp(hi, tz="UTC"))
    scope = _scope_hosts(spec, host, ctx)
    states = [
        "present" if h in seen_on else "absent" if ctx.coverage.covers(h, channels, *span) else "unknown"
        for h in scope
    ]
    held = score.host_states_outcome(states, spec.expect, spec.nodes)
    value = score.contribution(spec.role, spec.weight, held)
    note = None
    if held is None:
        note = NOTE_UNKNOWN
    elif value == score.VETO:
        note = NOTE_VETO
    elif held is False and spec.nodes == "every" and "present" in states:
        note = NOTE_NOT_EVERY
    cited = hits.row[found & np.isin(hits.host, scope)]
    return Evidence(
        role=spec.role,
        key=spec.key,
        detection=spec.detection,
        status=score.status_of(held, spec.expect),
        contribution=round(value, 4),
        rows=tuple(sorted(set(cited.tolist()))),
        note_key=note,
    )


def _anchor_evidence(hits: _Hits, mask: np.ndarray) -> list[Evidence]:
    """One required, unscored item per anchor detection seen: a finding always cites what opened it."""
    items = []
    for name in sorted(set(hits.detection[mask].tolist())):
        rows = hits.row[mask & (hits.detection == name)]
        items.append(
            Evidence(
                "required",
                f"anchor:{name}",
                name,
                "present",
                0.0,
                tuple(sorted(set(rows.tolist()))),
                NOTE_ANCHOR,
            )
        )
    return items


def _findings_for(cause: Cause, incident: Incident, ctx: _Context) -> list[Finding]:
    hits = ctx.hits
    is_anchor = np.isin(hits.detection, cause.anchors)
    findings = []
    for host in sorted(set(hits.host[is_anchor].tolist())):
        mine = is_anchor & (hits.host == host)
        first, last = int(hits.ns[mine].min()), int(hits.ns[mine].max())
        evidence = (
            *_anchor_evidence(hits, mine),
            *(_evidence(spec, host, first, last, ctx) for spec in cause.evidence),
        )
        value = score.confidence(cause.prior, (item.contribution for item in evidence))
        findings.append(Finding(cause.id, incident.id, host, value, evidence))
    return findings


def _drop_explained_fallbacks(findings: list[Finding], ruleset: Ruleset, threshold: float) -> list[Finding]:
    explained = {
        (f.incident, f.host)
        for f in findings
        if not ruleset.causes[f.cause].fallback and _reportable(f, threshold)
    }
    return [
        f for f in findings if not (ruleset.causes[f.cause].fallback and (f.incident, f.host) in explained)
    ]


def diagnose(
    frame: pd.DataFrame,
    incidents: list[Incident],
    signals: Mapping[int, tuple[str, ...]],
    ruleset: Ruleset,
    *,
    threshold: float | None = None,
    coverage: Coverage | None = None,
    skew_s: float | None = None,
) -> tuple[list[Finding], list[Finding]]:
    """(findings at or above the threshold, rejected ones), each sorted by incident then confidence.

    `coverage` says which logs the bundle holds and their time spans; by default it is computed
    from the frame (the caller may build one from the ledger instead).
    """
    settings = ruleset.settings
    cut = settings.threshold if threshold is None else threshold
    spans = coverage or Coverage.from_frame(frame, settings.coverage_slack_s)
    skew_ns = int((settings.skew_s if skew_s is None else skew_s) * 1e9)
    channels = {name: d.channels for name, d in ruleset.detections.items()}
    nodes = node_set(frame, signals, ruleset)
    results: list[Finding] = []
    for incident in incidents:
        ctx = _Context(_Hits.of(frame, incident.rows, signals), nodes, spans, channels, skew_ns)
        for cause in ruleset.causes.values():
            results.extend(_findings_for(cause, incident, ctx))
    results = _drop_explained_fallbacks(results, ruleset, cut)
    order = {incident.id: number for number, incident in enumerate(incidents)}
    results.sort(key=lambda f: (order[f.incident], -f.confidence, f.cause, f.host))
    reported = [f for f in results if _reportable(f, cut)]
    return reported, [f for f in results if not _reportable(f, cut)]


def _reportable(finding: Finding, threshold: float) -> bool:
    """At or above the threshold, and every required item actually seen (unknown is not enough)."""
    required_seen = all(item.status == "present" for item in finding.evidence if item.role == "required")
    return finding.confidence >= threshold and required_seen
