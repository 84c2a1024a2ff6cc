"""Selective parsing of several .evtx files at once, one file per task in a process pool.

A worker returns the few records the rules may match and the file's ledger entry, filled in; the
parent takes them in the order the files were given, so the table (and which of two duplicates is
kept) is the same as a sequential run. Only selective parsing is spread out: decoding every record
would ship the whole table between processes.
"""

from __future__ import annotations

import multiprocessing
import weakref
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
    files are started first so the pool drains evenly. The workers start now, not at the first
    next(): the caller may do other work (imports) while they parse."""
    order = sorted(range(len(jobs)), key=lambda i: -_size(jobs[i][0]))
    context = multiprocessing.get_context("fork")
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=worker_defaults)
    futures: dict[int, Future] = {}
    try:
        for index in order:
            source, entry = jobs[index]
            futures[index] = pool.submit(_parse_file, source, entry, backend, wanted)
    except BaseException:
        _stop(pool, futures)
        raise
    results = _in_order(pool, futures, jobs)
    weakref.finalize(results, _stop, pool, futures)  # also when dropped before its first next()
    return results


def _in_order(
    pool: ProcessPoolExecutor, futures: dict[int, Future], jobs: list[tuple[Source, InputEntry]]
) -> Iterator[tuple[Source, list[dict], InputEntry]]:
    try:
        for index, (source, _entry) in enumerate(jobs):
            records, filled = futures[index].result()
            yield source, records, filled
    finally:
        _stop(pool, futures)


def _stop(pool: ProcessPoolExecutor, futures: dict[int, Future]) -> None:
    for future in futures.values():
        future.cancel()
    pool.shutdown(wait=True)


def _size(source: Source) -> int:
    try:
        return source.path.stat().st_size
    except OSError:
        return 0
