"""Findings as a senior engineer states them: one verdict per cluster-wide cause, benign explanations
kept apart (and never above a real cause), measured clock offsets attached.

Runs after diagnose() on its (findings, rejected); pure data in, data out:
- `kind` comes from the cause file ('cause' or 'benign');
- a benign finding in an incident where a real cause is reported moves to `rejected`, with an item
  saying so: the incident is not "nothing to do"; a ruled-out benign finding whose required evidence
  was not even seen (no boot at all) is dropped: listing "not a start-up" on every node is noise;
- a `scope: cluster` cause gives one finding per incident: `host` None, `hosts` every node whose own
  finding was reported, the evidence of the most confident one, and every node's anchors cited (nodes
  whose own finding fell short are part of that verdict and leave `rejected`);
- `skew_seconds` holds the measured clock offset of each host whose records the finding cites.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace

from evtxcorr.model import ClockOffset, Evidence, Finding
from evtxcorr.ruleset import Ruleset

NOTE_REAL_CAUSE = "evidence.real_cause_in_incident"
REAL_CAUSE_KEY = "benign:real-cause"


def finalize(
    findings: Sequence[Finding],
    rejected: Sequence[Finding],
    ruleset: Ruleset,
    *,
    clock: Iterable[ClockOffset] = (),
    host_of_row: Mapping[int, str] | None = None,
) -> tuple[list[Finding], list[Finding]]:
    """(findings, rejected) after kinds, benign demotion, cluster merge and clock offsets."""
    kinds = {cause_id: cause.kind for cause_id, cause in ruleset.causes.items()}
    reported = [replace(f, kind=kinds.get(f.cause, "cause")) for f in findings]
    ruled_out = [replace(f, kind=kinds.get(f.cause, "cause")) for f in rejected]
    reported, demoted = _benign_apart(reported)
    ruled_out = [f for f in ruled_out if f.kind != "benign" or _required_seen(f)]  # not a start-up at all
    cluster = {cause_id for cause_id, cause in ruleset.causes.items() if cause.scope == "cluster"}
    reported = _merge_cluster(reported, cluster)
    verdicts = {(f.cause, f.incident) for f in reported if f.cause in cluster}
    ruled_out = [f for f in ruled_out if (f.cause, f.incident) not in verdicts]  # part of that verdict
    ruled_out = _merge_cluster(ruled_out + demoted, cluster)
    offsets = {c.host: c.offset_s for c in clock}
    if offsets and host_of_row is not None:
        reported = [_with_skew(f, offsets, host_of_row) for f in reported]
        ruled_out = [_with_skew(f, offsets, host_of_row) for f in ruled_out]
    return reported, ruled_out


def _benign_apart(findings: list[Finding]) -> tuple[list[Finding], list[Finding]]:
    """Benign findings of incidents that also have a real cause reported, moved out with a reason."""
    real = {f.incident: f.cause for f in findings if f.kind != "benign"}
    kept, demoted = [], []
    for finding in findings:
        if finding.kind == "benign" and finding.incident in real:
            item = Evidence(
                "refuting", REAL_CAUSE_KEY, real[finding.incident], "present", 0.0, (), NOTE_REAL_CAUSE
            )
            demoted.append(replace(finding, evidence=(*finding.evidence, item)))
        else:
            kept.append(finding)
    return kept, demoted


def _required_seen(finding: Finding) -> bool:
    return all(item.status == "present" for item in finding.evidence if item.role == "required")


def _merge_cluster(findings: list[Finding], cluster: set[str]) -> list[Finding]:
    """One finding per (cluster cause, incident), in the place of the first member."""
    groups: dict[tuple[str, str], list[Finding]] = {}
    for finding in findings:
        if finding.cause in cluster:
            groups.setdefault((finding.cause, finding.incident), []).append(finding)
    out: list[Finding] = []
    for finding in findings:
        if finding.cause not in cluster:
            out.append(finding)
            continue
        members = groups.pop((finding.cause, finding.incident), None)
        if members:
            out.append(_merged(members))
    return out


def _merged(members: list[Finding]) -> Finding:
    best = max(members, key=lambda f: f.confidence)  # the first of equals: diagnose sorts by host
    hosts = tuple(sorted({h for f in members for h in (f.hosts or (f.host,)) if h}))
    anchors: dict[str, set[int]] = {}
    for member in members:
        for item in member.evidence:
            if item.key.startswith("anchor:"):
                anchors.setdefault(item.key, set()).update(item.rows)
    evidence = tuple(
        replace(item, rows=tuple(sorted(anchors[item.key]))) if item.key in anchors else item
        for item in best.evidence
    )
    known = {item.key for item in best.evidence}
    extra = tuple(
        next(i for m in members for i in m.evidence if i.key == key)
        for key in sorted(anchors)
        if key not in known
    )
    extra = tuple(replace(item, rows=tuple(sorted(anchors[item.key]))) for item in extra)
    return replace(best, host=None, hosts=hosts, evidence=evidence + extra)


def _with_skew(finding: Finding, offsets: Mapping[str, float], host_of_row: Mapping[int, str]) -> Finding:
    hosts = {host_of_row[row] for item in finding.evidence for row in item.rows if row in host_of_row}
    hosts |= set(finding.hosts) | ({finding.host} if finding.host else set())
    skew = {host: round(offsets[host], 3) for host in sorted(hosts) if host in offsets}
    return replace(finding, skew_seconds=skew) if skew else finding
