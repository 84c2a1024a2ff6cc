"""Stage 5: name causes per episode of errors on a host, with a confidence range and the evidence behind it.

For each cause and host, the host's anchors (the cause's error detections) are split into *episodes*
where they are more than `episode_gap_s` apart (settings.yaml; `--gap` only groups incidents for the
report). Each episode is judged on its own, from the whole signal table (index.py), never from one
incident's rows, so how anchors were grouped into incidents changes no verdict:

- `before` evidence is looked for before the episode's *onset* (its first anchor): a cause must explain
  how the failure began, so a link-down five hours into a failure cannot be its cause;
- `after` and `around` evidence is looked for around each anchor of the episode (the nearest anchor
  counts), so a long episode does not widen any window.

Each item is scored by score.py with a range: hosts whose log cannot decide it counted against, then
for the cause. Findings at or above the threshold whose required evidence was all seen are reported
(`certainty` 'confirmed' when even the low end reaches the threshold, else 'unconfirmed'); the others
go to `rejected`. A `fallback` cause is dropped where another cause explains an overlapping episode.
See rules/README.md for scopes, relations and the node list.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from evtxcorr.correlate.clusters import mentions
from evtxcorr.diagnose import score
from evtxcorr.diagnose.coverage import Coverage
from evtxcorr.diagnose.index import Hits, SignalIndex, merge_windows
from evtxcorr.model import Evidence, Finding, Incident
from evtxcorr.ruleset import Cause, EvidenceSpec, Ruleset

__all__ = ["Coverage", "SignalIndex", "diagnose", "episodes", "node_set"]

NOTE_UNKNOWN = "evidence.unknown_missing_log"
NOTE_NOT_EVERY = "evidence.not_on_every_node"
NOTE_VETO = "evidence.required_not_met"
NOTE_ANCHOR = "evidence.anchor"  # key 'anchor:<detection>': the rows that made the host a candidate
NOTE_UNCHECKED = "evidence.payload_not_checked"  # seen only in exports without payload: unknown
NS = 1_000_000_000


@dataclass(frozen=True)
class Episode:
    """A run of one cause's anchors on one host, none more than the episode gap after the previous."""

    host: str
    hits: Hits  # the anchors, in time order

    @property
    def onset(self) -> int:
        return int(self.hits.ns[0])

    @property
    def last(self) -> int:
        return int(self.hits.ns[-1])


@dataclass(frozen=True)
class _Context:
    """What judging an episode needs: the signal index, the node set, coverage, channels, skew."""

    index: SignalIndex
    nodes: frozenset[str]
    coverage: Coverage
    channels: Mapping[str, tuple[str, ...]]
    skew_ns: int
    providers: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # detection -> its logsource's
    # providers (lower-case): what a log without a channel must hold to vouch for it
    maybe: frozenset[tuple[int, str]] = frozenset()  # (row, detection) that may match: payload unknown

    def sure(self, rows: np.ndarray, detection: str) -> np.ndarray:
        """The rows among `rows` that surely match `detection` (not only possibly)."""
        if not self.maybe:
            return rows
        return rows[[(int(row), detection) not in self.maybe for row in rows.tolist()]]


def node_set(frame: pd.DataFrame, signals: Mapping[int, tuple[str, ...]], ruleset: Ruleset) -> frozenset[str]:
    """Hosts with logs in the table, plus nodes named by position in cluster events (settings)."""
    nodes = set(frame["host_key"].dropna().unique()) if not frame.empty else set()
    nodes.update(mention.node for mention in mentions(frame, signals, ruleset))
    return frozenset(nodes)


def episodes(index: SignalIndex, anchors: Iterable[str], host: str, gap_s: float) -> list[Episode]:
    """The host's anchors of a cause, split where consecutive ones are more than `gap_s` apart."""
    hits = index.anchors(tuple(anchors), host)
    if not len(hits.ns):
        return []
    cuts = np.flatnonzero(np.diff(hits.ns) > int(gap_s * NS)) + 1
    return [
        Episode(host, Hits(ns, rows))
        for ns, rows in zip(np.split(hits.ns, cuts), np.split(hits.rows, cuts), strict=True)
    ]


def _windows(spec: EvidenceSpec, episode: Episode, same_host: bool, skew_ns: int) -> np.ndarray:
    """Where `spec` looks on one host, as merged [lo, hi] ns windows (inclusive). Other hosts' clocks
    may be off by up to the skew tolerance, so their windows widen by it on each side."""
    reach = int(spec.within_s * NS)
    skew = 0 if same_host else skew_ns
    if spec.relation == "before":  # before the onset; on the host itself strictly before its first anchor
        end = episode.onset - 1 if same_host else episode.onset + skew
        return np.array([[episode.onset - reach - skew, end]], dtype=np.int64)
    ahead = reach if spec.relation == "around" else 0
    ns = episode.hits.ns
    return merge_windows(np.stack([ns - ahead - skew, ns + reach + skew], axis=1))


def _scope_hosts(spec: EvidenceSpec, host: str, ctx: _Context) -> list[str]:
    if spec.scope == "same-host":
        return [host]
    if spec.scope == "other-nodes":
        return sorted(ctx.nodes - {host})
    if spec.scope == "all-nodes":
        return sorted(ctx.nodes | {host})
    return sorted(ctx.nodes | {host} | ctx.index.hosts())  # any-host


def _covered(
    coverage: Coverage,
    host: str,
    channels: tuple[str, ...],
    windows: np.ndarray,
    providers: tuple[str, ...] = (),
) -> bool:
    """Does the host's log vouch for every window? (A log that spans them all at once does.)"""

    def covers(lo: int, hi: int) -> bool:
        lo_t, hi_t = pd.Timestamp(lo, tz="UTC"), pd.Timestamp(hi, tz="UTC")
        return coverage.covers(host, channels, lo_t, hi_t, providers)

    if covers(int(windows[0, 0]), int(windows[-1, 1])):
        return True
    return len(windows) > 1 and all(covers(int(lo), int(hi)) for lo, hi in windows.tolist())


def _evidence(spec: EvidenceSpec, episode: Episode, ctx: _Context) -> Evidence:
    channels = ctx.channels.get(spec.detection, ())
    states: list[str] = []
    cited: list[np.ndarray] = []
    unknown: list[tuple[str, str]] = []
    unchecked: list[str] = []
    for host in _scope_hosts(spec, episode.host, ctx):
        windows = _windows(spec, episode, host == episode.host, ctx.skew_ns)
        rows = ctx.index.get(spec.detection, host).within(windows)
        if len(ctx.sure(rows, spec.detection)):
            states.append("present")
            cited.append(rows)
        elif len(rows):  # only events whose payload the export did not carry: they may or may not be it
            states.append("unknown")
            cited.append(rows)
            unchecked.append(host)
        elif _covered(ctx.coverage, host, channels, windows, ctx.providers.get(spec.detection, ())):
            states.append("absent")
        else:
            states.append("unknown")
            unknown.append((host, channels[0] if channels else ""))
    held = score.host_states_outcome(states, spec.expect, spec.nodes)
    value = score.contribution(spec.role, spec.weight, held)
    low, high = score.contribution_range(
        spec.role, spec.weight, score.possible_outcomes(states, spec.expect, spec.nodes)
    )
    note = None
    if held is None:
        note = NOTE_UNCHECKED if unchecked and not unknown else NOTE_UNKNOWN
    elif value == score.VETO:
        note = NOTE_VETO
    elif held is False and spec.nodes == "every" and "present" in states:
        note = NOTE_NOT_EVERY
    return Evidence(
        role=spec.role,
        key=spec.key,
        detection=spec.detection,
        status=score.status_of(held, spec.expect),
        contribution=round(value, 4),
        rows=tuple(sorted(set(np.concatenate(cited).tolist()))) if cited else (),
        note_key=note,
        contribution_range=(round(low, 4), round(high, 4)),
        unknown_logs=tuple(unknown) if low != high else (),
        unchecked_hosts=tuple(unchecked) if low != high else (),
    )


def _anchor_evidence(episode: Episode, ctx: _Context, anchors: tuple[str, ...]) -> list[Evidence]:
    """One required, unscored item per anchor detection seen: a finding always cites what opened it.
    Anchors seen only in exports without payload say so (the event is there, its details unchecked)."""
    items = []
    mine = set(episode.hits.rows.tolist())
    for name in sorted(anchors):
        rows = sorted(mine.intersection(ctx.index.get(name, episode.host).rows.tolist()))
        if rows:
            unchecked = not len(ctx.sure(np.asarray(rows, dtype=np.int64), name))
            items.append(
                Evidence(
                    "required",
                    f"anchor:{name}",
                    name,
                    "present",
                    0.0,
                    tuple(rows),
                    NOTE_UNCHECKED if unchecked else NOTE_ANCHOR,
                    (0.0, 0.0),
                    unchecked_hosts=(episode.host,) if unchecked else (),
                )
            )
    return items


def _finding(cause: Cause, episode: Episode, incident: str, ctx: _Context) -> Finding:
    evidence = (
        *_anchor_evidence(episode, ctx, cause.anchors),
        *(_evidence(spec, episode, ctx) for spec in cause.evidence),
    )
    value = score.confidence(cause.prior, (item.contribution for item in evidence))
    ranges = [item.contribution_range or (item.contribution, item.contribution) for item in evidence]
    low = score.confidence(cause.prior, (r[0] for r in ranges))
    high = score.confidence(cause.prior, (r[1] for r in ranges))
    return Finding(
        cause.id,
        incident,
        episode.host,
        value,
        evidence,
        confidence_range=(low, high),
        onset=pd.Timestamp(episode.onset, tz="UTC").to_pydatetime(),
        last=pd.Timestamp(episode.last, tz="UTC").to_pydatetime(),
    )


def _drop_explained_fallbacks(findings: list[Finding], ruleset: Ruleset, threshold: float) -> list[Finding]:
    """A fallback finding is dropped where a reportable finding of another cause, on the same host,
    explains an episode overlapping its own."""
    explained = [f for f in findings if not ruleset.causes[f.cause].fallback and _reportable(f, threshold)]

    def covered(f: Finding) -> bool:
        return any(
            g.host == f.host and g.onset <= f.last and f.onset <= g.last  # type: ignore[operator]
            for g in explained
        )

    return [f for f in findings if not (ruleset.causes[f.cause].fallback and covered(f))]


def diagnose(
    frame: pd.DataFrame,
    incidents: list[Incident],
    signals: Mapping[int, tuple[str, ...]],
    ruleset: Ruleset,
    *,
    threshold: float | None = None,
    coverage: Coverage | None = None,
    skew_s: float | None = None,
    nodes: Iterable[str] | None = None,
    maybe: Mapping[int, tuple[str, ...]] | None = None,
) -> tuple[list[Finding], list[Finding]]:
    """(findings at or above the threshold, rejected ones), each sorted by incident then confidence.

    Every episode whose first anchor belongs to one of `incidents` is judged. `coverage` says which
    logs the bundle holds and their time spans (default: computed from the frame). `nodes` is the
    cluster's node list (host keys; default: hosts with logs plus nodes named in cluster events).
    `maybe` (ruleset.match_unknown) holds the detections rows may match but whose payload the input
    did not carry: they anchor episodes like sure matches, and evidence they alone show is unknown.
    """
    settings = ruleset.settings
    cut = settings.threshold if threshold is None else threshold
    spans = coverage or Coverage.from_frame(frame, settings.coverage_slack_s)
    skew_ns = int((settings.skew_s if skew_s is None else skew_s) * NS)
    channels = {name: d.channels for name, d in ruleset.detections.items()}
    providers = {name: d.providers for name, d in ruleset.detections.items()}
    node_list = frozenset(nodes) if nodes is not None else node_set(frame, signals, ruleset)
    maybe = maybe or {}
    every = {row: signals.get(row, ()) + maybe.get(row, ()) for row in sorted({*signals, *maybe})}
    index = SignalIndex.build(frame, every)
    unsure = frozenset((row, name) for row, names in maybe.items() for name in names)
    ctx = _Context(index, node_list, spans, channels, skew_ns, providers, unsure)
    incident_of = {row: incident.id for incident in incidents for row in incident.anchor_rows}
    results: list[Finding] = []
    for cause in ruleset.causes.values():
        for host in sorted(index.hosts()):
            for episode in episodes(index, cause.anchors, host, settings.episode_gap_s):
                incident = incident_of.get(int(episode.hits.rows[0]))
                if incident is not None:
                    results.append(_finding(cause, episode, incident, ctx))
    results = _drop_explained_fallbacks(results, ruleset, cut)
    order = {incident.id: number for number, incident in enumerate(incidents)}
    results.sort(key=lambda f: (order[f.incident], -f.confidence, f.cause, f.host, f.onset))
    reported = [_judged(f, cut) for f in results if _reportable(f, cut)]
    return reported, [f for f in results if not _reportable(f, cut)]


def _reportable(finding: Finding, threshold: float) -> bool:
    """At or above the threshold, and every required item actually seen: unknown is not enough, except
    an event that is there but came from an export without payload (its details unchecked)."""
    required_seen = all(
        item.status == "present" or (item.note_key == NOTE_UNCHECKED and not item.unknown_logs)
        for item in finding.evidence
        if item.role == "required"
    )
    return finding.confidence >= threshold and required_seen


def _judged(finding: Finding, threshold: float) -> Finding:
    """A reported finding is 'confirmed' when even its low end reaches the threshold."""
    low = finding.confidence_range[0] if finding.confidence_range else finding.confidence
    certainty = "confirmed" if low >= threshold else "unconfirmed"
    return replace(finding, certainty=certainty)
