"""Selective parsing of several .evtx files at once, one file per task in a process pool.

A worker returns the few records the rules may match and the file's ledger entry, filled in; the
parent takes them in the order the files were given, so the table (and which of two duplicates is
kept) is the same as a sequential run. Only selective parsing is spread out: decoding every record
would ship the whole table between processes.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor

from evtxcorr.ledger import InputEntry
from evtxcorr.model import Source
from evtxcorr.parse import parse
from evtxcorr.ruleset.wanted import Wanted
from evtxcorr.signals import worker_defaults

MIN_PARALLEL_BYTES = 32 * 1024 * 1024  # below this, starting workers costs more than it saves


def _parse_file(
    source: Source, entry: InputEntry, backend: str, wanted: Wanted
) -> tuple[list[dict], InputEntry]:
    return list(parse(source, entry, backend=backend, wanted=wanted)), entry


def worth_it(sources: list[Source], jobs: int) -> bool:
    """Several files, enough bytes, more than one job."""
    if jobs < 2 or len(sources) < 2:
        return False
    return sum(map(_size, sources)) >= MIN_PARALLEL_BYTES


def parse_parallel(
    jobs: list[tuple[Source, InputEntry]], backend: str, wanted: Wanted, workers: int
) -> Iterator[tuple[Source, list[dict], InputEntry]]:
    """(source, records, entry as the worker filled it) for each job, in the order given; largest
    files are started first so the pool drains evenly."""
    order = sorted(range(len(jobs)), key=lambda i: -_size(jobs[i][0]))
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=worker_defaults) as pool:
        futures: dict[int, Future] = {}
        try:
            for index in order:
                source, entry = jobs[index]
                futures[index] = pool.submit(_parse_file, source, entry, backend, wanted)
            for index, (source, _entry) in enumerate(jobs):
                records, filled = futures[index].result()
                yield source, records, filled
        finally:
            for future in futures.values():
                future.cancel()


def _size(source: Source) -> int:
    try:
        return source.path.stat().st_size
    except OSError:
        return 0
