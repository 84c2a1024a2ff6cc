"""The stages after the event table: match detections, then, one cluster at a time (one cluster never
vouches for another), measure clocks, correlate into incidents and diagnose them.

Imported by analyze() only once parsing has started: this is where pandas comes in.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import TYPE_CHECKING

import pandas as pd

from evtxcorr.correlate import clock, correlate
from evtxcorr.correlate.clusters import (
    collected_hosts,
    find_clusters,
    mentions,
    renumber,
    rows_by_cluster,
)
from evtxcorr.diagnose import Coverage, diagnose
from evtxcorr.diagnose.coverage import Span, holes_by_log
from evtxcorr.diagnose.verdicts import finalize
from evtxcorr.hosts import host_key, split_host
from evtxcorr.ledger import InputEntry, Ledger
from evtxcorr.model import ClockOffset, Cluster, Finding, Incident
from evtxcorr.parse.normalise import filetime_to_datetime
from evtxcorr.ruleset import Ruleset, Signals, match_unknown

if TYPE_CHECKING:
    from evtxcorr.analyze import Options

__all__ = ["conclude", "undecoded_spans"]

Concluded = tuple[
    Signals, Signals, list[Cluster], list[ClockOffset], list[Incident], list[Finding], list[Finding]
]


def conclude(frame: pd.DataFrame, ruleset: Ruleset, options: Options, ledger: Ledger) -> Concluded:
    """(signals, maybe, clusters, clock offsets, incidents, findings, rejected) of the event table.
    `maybe`: rows that may match a detection whose payload their input did not carry."""
    signals, maybe = match_unknown(frame, ruleset)
    return (signals, maybe, *_per_cluster(frame, signals, maybe, ruleset, options, ledger))


def _subset(signals: Signals, rows: Iterable[int]) -> Signals:
    return {row: signals[row] for row in rows if row in signals}


def _per_cluster(
    frame: pd.DataFrame,
    signals: Signals,
    maybe: Signals,
    ruleset: Ruleset,
    options: Options,
    ledger: Ledger,
) -> tuple[list[Cluster], list[ClockOffset], list[Incident], list[Finding], list[Finding]]:
    """Clusters found in the inputs, then each one's clock offsets, incidents, findings and rejected
    causes, computed from that cluster's rows alone. Rows that only `maybe` match (payload not in the
    input) open incidents; they never name nodes or measure clocks, which read payload values."""
    hosts = collected_hosts(frame, (host for entry in ledger.entries for host in entry.hosts))
    clusters = find_clusters(hosts, mentions(frame, signals, ruleset), options.nodes)
    if not clusters:  # no host in any log: nothing to correlate
        return [], [], [], [], []
    several = len(clusters) > 1
    every = sorted({*signals, *maybe})
    mine = rows_by_cluster(frame, every, clusters) if several else [every]
    cluster_signals = [_subset(signals, rows) for rows in mine]
    cluster_maybe = [_subset(maybe, rows) for rows in mine]
    clock_settings = clock.clock_settings(ruleset.settings.clock)
    measured = [clock.estimate(frame, subset, clock_settings) for subset in cluster_signals]
    found = [
        correlate(
            frame,
            {row: subset.get(row, ()) + possible.get(row, ()) for row in rows},
            ruleset,
            gap_s=options.gap_s,
            lookback_s=options.lookback_s,
            lookahead_s=options.lookahead_s,
            skew_s=options.skew_s,
            offsets=clock.offsets_s(offsets),
        )
        for rows, subset, possible, offsets in zip(
            mine, cluster_signals, cluster_maybe, measured, strict=True
        )
    ]
    numbered = renumber(list(zip(clusters, found, strict=True)))
    slack = ruleset.settings.coverage_slack_s
    by_cluster = rows_by_cluster(frame, frame.index, clusters) if several else [None] * len(clusters)
    host_of_row = frame["host_key"]
    findings: list[Finding] = []
    rejected: list[Finding] = []
    for cluster, subset, possible, offsets, incidents, rows in zip(
        clusters, cluster_signals, cluster_maybe, measured, numbered, by_cluster, strict=True
    ):
        # where a damaged log lost records (its holes), it vouches for nothing
        holes = holes_by_log(_of_cluster(ledger, cluster if several else None))
        coverage = Coverage.from_frame(frame.loc[rows] if rows is not None else frame, slack, holes)
        coverage = coverage.extended(undecoded_spans(ledger, cluster if several else None))
        reported, ruled_out = diagnose(
            frame,
            incidents,
            subset,
            ruleset,
            threshold=options.threshold,
            skew_s=options.skew_s,
            coverage=coverage,
            nodes=cluster.nodes,
            maybe=possible,
        )
        reported, ruled_out = finalize(reported, ruled_out, ruleset, clock=offsets, host_of_row=host_of_row)
        name = cluster.name if several else None
        findings += [replace(f, cluster=name) for f in reported]
        rejected += [replace(f, cluster=name) for f in ruled_out]
    incidents = sorted((i for group in numbered for i in group), key=lambda i: int(i.id[1:]))
    order = {incident.id: number for number, incident in enumerate(incidents)}
    findings.sort(key=lambda f: order[f.incident])
    rejected.sort(key=lambda f: order[f.incident])
    return clusters, [o for offsets in measured for o in offsets], incidents, findings, rejected


def _of_cluster(ledger: Ledger, cluster: Cluster | None) -> list[InputEntry]:
    """The ledger's entries, or those whose logs were written by `cluster`'s hosts."""
    if cluster is None:
        return ledger.entries
    members = {(key, cluster.domain) for key in cluster.hosts}
    return [e for e in ledger.entries if any(split_host(host) in members for host in e.hosts)]


def undecoded_spans(ledger: Ledger, cluster: Cluster | None = None) -> list[tuple[tuple[str, str], Span]]:
    """((host key, channel), (first, last)) of the records each log holds but selective parsing did not
    decode (of `cluster`'s hosts only, when given). A log of several hosts or channels is left out:
    which of them its undecoded records belong to is not known, so they vouch for nothing."""
    members = {(key, cluster.domain) for key in cluster.hosts} if cluster is not None else None
    spans = []
    for entry in ledger.entries:
        if entry.undecoded_span is None or len(entry.hosts) != 1 or len(entry.channels) != 1:
            continue
        if members is not None and split_host(entry.hosts[0]) not in members:
            continue
        lo, hi = (filetime_to_datetime(ticks) for ticks in entry.undecoded_span)
        key = (host_key(entry.hosts[0]), entry.channels[0])
        spans.append((key, (pd.Timestamp(lo), pd.Timestamp(hi))))
    return spans
