"""analyze(): the one place that wires the stages together, in order, one way.

discover -> parse -> table -> match detections -> correlate -> diagnose -> Report (render/ writes it).
The stages after parsing (table.py, conclude.py) are imported once parsing has started: they bring in
pandas, which the parse workers never need.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from evtxcorr import __version__
from evtxcorr.discover import discover
from evtxcorr.errors import InputError
from evtxcorr.ledger import InputEntry, Ledger
from evtxcorr.model import Report, Source
from evtxcorr.parse import BACKENDS, read_source
from evtxcorr.parse.exports import NEEDS_ZONE, zone_error
from evtxcorr.parse.guard import Pending, Workers, parse_many
from evtxcorr.parse.plan import decode_whole
from evtxcorr.parse.pool import worth_it
from evtxcorr.signals import temporary_folder

if TYPE_CHECKING:
    from evtxcorr.ruleset import Ruleset
    from evtxcorr.ruleset.wanted import Wanted

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
    # A team's rules are checked before any input is touched (extracting a bundle can take a while);
    # the built-in ones, which the tests check, are imported and loaded while a child plans selective
    # parsing (pySigma alone takes about 50 ms to import).
    ruleset = _rules(options.rule_dirs) if options.rule_dirs else None
    ledger = Ledger(warnings=[f"rules: built-in {note}" for note in ruleset.replaced] if ruleset else [])
    with temporary_folder("evtxcorr-", options.work_dir) as work_dir:  # removed on signals too
        sources = discover(list(paths), ledger, work_dir=work_dir)
        if on_sources:
            on_sources(sources)
        check_zones(sources, options.source_tz)
        planning = _plan(sources, options)
        try:
            ruleset = ruleset or _rules(())
            wanted = _wanted(ruleset, sources, planning, ledger)
        finally:
            if planning is not None:
                planning.cancel()  # not waited for (the rules failed to load, or pin no pairs): killed
        records = read_all(sources, ledger, options, progress, wanted=wanted)
        with _long_lived_frozen():
            # The later stages import pandas (about 0.3 s): here, while the parse workers already run.
            from evtxcorr.conclude import conclude
            from evtxcorr.table import to_frame

            gc.freeze()  # pandas too
            frame = to_frame(records, ledger)
            signals, maybe, clusters, offsets, incidents, findings, rejected = conclude(
                frame, ruleset, options, ledger
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


@contextmanager
def _long_lived_frozen() -> Iterator[None]:
    """What is alive now (modules, the rules; gc.freeze() again to add more) kept out of the garbage
    collector's scans while the table is built and judged: every full collection would walk it again
    (0.1 s each on a 1 GB bundle's run). Objects made meanwhile are collected as usual; all unfrozen
    at the end."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def check_zones(sources: list[Source], source_tz: str | None) -> None:
    """Exports whose times carry no zone need --source-tz: say so before reading anything."""
    if source_tz is None:
        local = [s.display for s in sources if s.kind in NEEDS_ZONE and NEEDS_ZONE[s.kind](s)]
        if local:
            raise InputError(zone_error(local))


def _rules(rule_dirs: Sequence[Path]) -> Ruleset:
    """The built-in rules with `rule_dirs` beside them (RuleError when they do not load)."""
    from evtxcorr.ruleset import load_ruleset, with_builtin

    return load_ruleset(with_builtin(rule_dirs))


def _plan(sources: list[Source], options: Options) -> Pending | None:
    """plan.decode_whole started in a guarded child (it reads first records with the evtx parser), or
    None when selective parsing cannot apply: --all-records, or exports in the inputs (their records are
    paired with the .evtx records they copy, which needs those decoded)."""
    if options.all_records or any(source.kind != "evtx" for source in sources):
        return None
    return Pending(lambda: decode_whole(sources), None)


def _wanted(
    ruleset: Ruleset, sources: list[Source], planning: Pending | None, ledger: Ledger
) -> tuple[Wanted, set[int]] | None:
    """What selective parsing decodes (the rules' pairs) and which files it decodes whole (`planning`'s
    answer); None to decode everything (no planning, or rules that pin no pairs)."""
    from evtxcorr.ruleset.wanted import wanted_pairs

    pairs = wanted_pairs(ruleset) if planning is not None else None
    if pairs is None:
        return None
    whole = planning.result()
    if whole is None:  # the child was killed: every file decoded whole, exact, only slower
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
    .evtx files are read in a process pool of options.jobs workers (default: the CPU count), started
    before this returns."""
    selective = (
        [] if wanted is None else [s for s in sources if s.kind == "evtx" and s.entry_id not in wanted[1]]
    )
    workers = options.jobs or os.cpu_count() or 1
    pooled: Iterator[tuple[Source, list[dict], InputEntry]] = iter(())
    if wanted is not None and worth_it(selective, workers):
        jobs = [(source, ledger.get(source.entry_id)) for source in selective]
        pooled = parse_many(jobs, options.backend, wanted[0], workers)
    else:
        selective = []
    in_pool = {source.entry_id for source in selective}
    return _read_in_order(sources, ledger, options, progress, wanted, in_pool, pooled)


def _read_in_order(
    sources: list[Source],
    ledger: Ledger,
    options: Options,
    progress: ProgressHook | None,
    wanted: tuple[Wanted, set[int]] | None,
    in_pool: set[int],
    pooled: Iterator[tuple[Source, list[dict], InputEntry]],
) -> Iterator[dict]:
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

            records = read_source(
                source,
                entry,
                backend=options.backend,
                source_tz=options.source_tz,
                wanted=pairs,
                on_progress=tick if progress else None,
                workers=guarded,
            )
            for count, record in enumerate(records, start=1):
                if progress and count % 4096 == 0:
                    progress(source, entry.records, False)
                yield record
            if progress:
                progress(source, entry.records, True, 0, entry.chunks_decoded)
