"""Selective parsing of several .evtx files at once, each in a guarded child process (guard.py).

A child sends back the few records the rules may match and the file's ledger entry, filled in; the
parent takes them in the order the files were given, so the table (and which of two duplicates is
kept) is the same as a sequential run. Only selective parsing is spread out: decoding every record
would ship the whole table between processes. A child stuck in the evtx parser is killed by its
watchdog and costs one chunk (read with python-evtx), never the run.
"""

from __future__ import annotations

from collections.abc import Iterator

from evtxcorr.ledger import InputEntry
from evtxcorr.model import Source
from evtxcorr.parse.guard import parse_many, source_size
from evtxcorr.ruleset.wanted import Wanted

MIN_PARALLEL_BYTES = 32 * 1024 * 1024  # below this, starting workers costs more than it saves


def worth_it(sources: list[Source], jobs: int) -> bool:
    """Several files, enough bytes, more than one job."""
    if jobs < 2 or len(sources) < 2:
        return False
    return sum(map(source_size, sources)) >= MIN_PARALLEL_BYTES


def parse_parallel(
    jobs: list[tuple[Source, InputEntry]], backend: str, wanted: Wanted, workers: int
) -> Iterator[tuple[Source, list[dict], InputEntry]]:
    """(source, records, entry as the child filled it) for each job, in the order given, at most
    `workers` files at once; largest files are started first so the work drains evenly."""
    return parse_many(jobs, backend, wanted, workers)
