"""When selective parsing reads several .evtx files at once (guard.parse_many: each in a guarded child
process, results taken in the order the files were given, so the table and which of two duplicates is
kept are those of a sequential run). Only selective parsing is spread out: decoding every record
would ship the whole table between processes.
"""

from __future__ import annotations

from evtxcorr.model import Source

MIN_PARALLEL_BYTES = 32 * 1024 * 1024  # below this, starting workers costs more than it saves


def worth_it(sources: list[Source], jobs: int) -> bool:
    """Several files, enough bytes, more than one job."""
    if jobs < 2 or len(sources) < 2:
        return False
    return sum(source.size() for source in sources) >= MIN_PARALLEL_BYTES
