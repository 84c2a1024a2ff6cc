"""analyze(): the one place that wires the stages together, in order, one way.

discover -> parse -> table -> match detections -> correlate -> diagnose -> Report (render/ writes it).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from evtxcorr import __version__
from evtxcorr.correlate import clock, correlate
from evtxcorr.correlate.clusters import (
    collected_hosts,
    find_clusters,
    mentions,
    renumber,
    rows_by_cluster,
    split_host,
)
from evtxcorr.diagnose import Coverage, diagnose
from evtxcorr.diagnose.coverage import Span, holes_by_log
from evtxcorr.diagnose.verdicts import finalize
from evtxcorr.discover import discover
from evtxcorr.errors import InputError
from evtxcorr.ledger import InputEntry, Ledger
from evtxcorr.model import ClockOffset, Cluster, Finding, Incident, Report, Source
from evtxcorr.parse import BACKENDS, read_source
from evtxcorr.parse.exports import NEEDS_ZONE, zone_error
from evtxcorr.parse.guard import Workers, call_guarded, parse_guarded
from evtxcorr.parse.normalise import filetime_to_datetime
from evtxcorr.parse.plan import decode_whole
from evtxcorr.parse.pool import parse_parallel, worth_it
from evtxcorr.ruleset import Ruleset, Signals, load_ruleset, match_unknown, with_builtin
from evtxcorr.ruleset.wanted import Wanted, wanted_pairs
from evtxcorr.signals import temporary_folder
from evtxcorr.table import to_frame

# Called as progress(source, records_so_far, finished[, bytes_scanned, chunks_decoded]) while parsing;
# the CLI draws a bar with it (progress.Progress.update).
ProgressHook = Callable[..., None]


@dataclass(frozen=True)
class Options:
    """What an analysis may be told; None means 'as the rules' settings say'."""

    backend: str = "evtx"
    rule_dirs: tuple[Path, ...] = ()
    gap_s: float | None = None
    lookback_s: float | None = None
    lookahead_s: float | None = None
    skew_s: float | None = None
    threshold: float | None = None
    work_dir: Path | None = None  # where zip members are extracted (a private temp dir inside it)
    nodes: tuple[str, ...] = ()  # the cluster's nodes as the engineer knows them (--nodes)
    source_tz: str | None = None  # IANA zone of exports whose times are local with no zone (CSV)
    jobs: int | None = None  # worker processes for selective parsing (--jobs); None: the CPU count
    all_records: bool = False  # decode every record into the table (--all-records); by default only
    # records a rule may match are decoded, the others are counted from their headers

    def as_dict(self) -> dict[str, object]:
        return {
            "parser": self.backend,
            "rules": [str(p) for p in self.rule_dirs],
            "gap_s": self.gap_s,
            "lookback_s": self.lookback_s,
            "lookahead_s": self.lookahead_s,
            "skew_s": self.skew_s,
            "threshold": self.threshold,
            "nodes": list(self.nodes),
            "source_tz": self.source_tz,
            "all_records": self.all_records,
            "jobs": self.jobs,
        }


def analyze(
    paths: Sequence[Path],
    options: Options = Options(),
    *,
    on_sources: Callable[[list[Source]], None] | None = None,
    progress: ProgressHook | None = None,
) -> Report:
    """Analyse every input under `paths` and return the Report (nothing is written here)."""
    if options.backend not in BACKENDS:
        raise ValueError(f"unknown parser {options.backend!r}; choose one of {', '.join(BACKENDS)}")
    ruleset = load_ruleset(with_builtin(options.rule_dirs))
    ledger = Ledger(warnings=[f"rules: built-in {note}" for note in ruleset.replaced])
    with temporary_folder("evtxcorr-", options.work_dir) as work_dir:  # removed on signals too
        sources = discover(list(paths), ledger, work_dir=work_dir)
        if on_sources:
            on_sources(sources)
        check_zones(sources, options.source_tz)
        records = read_all(
            sources, ledger, options, progress, wanted=_wanted(sources, ruleset, options, ledger)
        )
        frame = to_frame(records, ledger)
    signals, maybe = match_unknown(frame, ruleset)  # maybe: rows of exports without payload
    clusters, offsets, incidents, findings, rejected = _per_cluster(
        frame, signals, maybe, ruleset, options, ledger
    )
    return Report(
        version=__version__,
        generated=datetime.now(UTC),
        options=options.as_dict(),
        ledger=ledger,
        frame=frame,
        incidents=incidents,
        findings=findings,
        rejected=rejected,
        causes=ruleset.cause_texts(),
        signals=signals,
        maybe=maybe,
        detections={name: detection.titles for name, detection in ruleset.detections.items()},
        clusters=clusters,
        clock=offsets,
    )


# --- correlate and diagnose one cluster at a time: one cluster never vouches for another -------------


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
        key = (entry.hosts[0].split(".", 1)[0].lower(), entry.channels[0])  # as table.host_keys
        spans.append((key, (pd.Timestamp(lo), pd.Timestamp(hi))))
    return spans


def check_zones(sources: list[Source], source_tz: str | None) -> None:
    """Exports whose times carry no zone need --source-tz: say so before reading anything."""
    if source_tz is None:
        local = [s.display for s in sources if s.kind in NEEDS_ZONE and NEEDS_ZONE[s.kind](s)]
        if local:
            raise InputError(zone_error(local))


def _wanted(
    sources: list[Source], ruleset: Ruleset, options: Options, ledger: Ledger
) -> tuple[Wanted, set[int]] | None:
    """What selective parsing decodes (the rules' pairs) and which files it decodes whole (plan.py);
    None to decode everything: --all-records, rules that pin no pairs, or exports in the inputs (their
    records are paired with the .evtx records they copy, which needs those decoded)."""
    if options.all_records or any(source.kind != "evtx" for source in sources):
        return None
    pairs = wanted_pairs(ruleset)
    if pairs is None:
        return None
    # decode_whole reads first records with the evtx parser: guarded like parsing. A child killed there
    # leaves every file decoded whole: exact, only slower.
    whole = call_guarded(lambda: decode_whole(sources), None)
    if whole is None:
        ledger.warn(
            "the evtx parser was killed while reading the logs' first records (to plan selective "
            "parsing): every log decoded whole"
        )
        whole = {source.entry_id for source in sources}
    return pairs, whole


def read_all(
    sources: list[Source],
    ledger: Ledger,
    options: Options,
    progress: ProgressHook | None = None,
    *,
    wanted: tuple[Wanted, set[int]] | None = None,
) -> Iterator[dict]:
    """Every record of every source (with `wanted`, only those a rule may match: the others are counted
    on the ledger entry), in order, each file accounted for on its ledger entry. Selectively parsed
    .evtx files are read in a process pool of options.jobs workers (default: the CPU count)."""
    selective = (
        [] if wanted is None else [s for s in sources if s.kind == "evtx" and s.entry_id not in wanted[1]]
    )
    workers = options.jobs or os.cpu_count() or 1
    pooled: Iterator[tuple[Source, list[dict], InputEntry]] = iter(())
    if wanted is not None and worth_it(selective, workers):
        jobs = [(source, ledger.get(source.entry_id)) for source in selective]
        pooled = parse_parallel(jobs, options.backend, wanted[0], workers)
    else:
        selective = []
    in_pool = {source.entry_id for source in selective}
    with Workers(
        None if wanted is None else wanted[0]
    ) as guarded:  # the guarded child processes reading the other .evtx files (reused)
        for source in sources:
            entry = ledger.get(source.entry_id)
            if source.entry_id in in_pool:
                done, records, filled = next(pooled)
                assert done is source
                vars(entry).update(vars(filled))  # the worker's accounting, on the parent's entry
                yield from records
                if progress:
                    progress(source, entry.records, True, 0, entry.chunks_decoded)
                continue
            pairs = None if wanted is None or source.entry_id in wanted[1] else wanted[0]

            def tick(scanned: int, source: Source = source, entry: InputEntry = entry) -> None:
                if progress:
                    progress(source, entry.records, False, scanned, entry.chunks_decoded)

            on_progress = tick if progress else None
            if source.kind == "evtx":
                records = parse_guarded(
                    source,
                    entry,
                    backend=options.backend,
                    wanted=pairs,
                    on_progress=on_progress,
                    workers=guarded,
                )
            else:
                records = read_source(source, entry, source_tz=options.source_tz, on_progress=on_progress)
            for count, record in enumerate(records, start=1):
                if progress and count % 4096 == 0:
                    progress(source, entry.records, False)
                yield record
            if progress:
                progress(source, entry.records, True, 0, entry.chunks_decoded)
