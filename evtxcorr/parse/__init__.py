"""Stage 2: one EVTX source -> record dicts (model.RECORD_FIELDS), with every record accounted for.

The file is split into chunks here (chunks.py); a backend reads one chunk at a time. Where the chosen
backend misses records of a chunk, the other backend reads that chunk and the records it recovers
are taken (`entry.recovered`); records whose header was found but that neither backend read are
`entry.records_failed`, and so are records a chunk header announces (first to last record id) whose
header was never found (zeroed or overwritten space). Where records were lost, `entry.holes` holds the
time spans they fell in (between the records read on each side): a log cannot vouch for the absence of
an event there (diagnose/coverage.py). Nothing raised while reading a damaged file escapes parse().
"""

from __future__ import annotations

import bisect
import re
import struct
from collections.abc import Callable, Container, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import numpy as np

from evtxcorr.hosts import host_key
from evtxcorr.ledger import InputEntry
from evtxcorr.model import Source
from evtxcorr.parse import prescan, rust, scan
from evtxcorr.parse.chunks import (
    CHUNK_HEADER_FIELDS,
    CHUNK_HEADER_SIZE,
    CHUNK_SIZE,
    FILE_HEADER_SIZE,
    BoundExceeded,
    Chunk,
    FileHeader,
    RecordSlot,
    iter_chunks,
    parse_file_header,
    read_fields,
    stitched,
    walk_records,
)
from evtxcorr.parse.normalise import filetime_to_datetime

if TYPE_CHECKING:
    from evtxcorr.parse.guard import Workers
    from evtxcorr.ruleset.wanted import Wanted  # (pySigma: analyze imports it once planning has started)

__all__ = ["BACKENDS", "HOLE_MARGIN", "PURE", "ChunkResult", "parse", "read_source"]

MAX_LOCATED_FAILURES = 5  # failed records named one by one in the warnings; the rest are summed
MAX_RECORDS_PER_CHUNK = (65536 - 512) // 32  # a chunk header announcing more is itself damaged
# A hole reaches this far past the records read on each side of it: TimeCreated is the provider's clock,
# and consecutive records of real logs are out of order by up to ~11 s (the corpus's security.evtx).
HOLE_MARGIN = timedelta(seconds=60)


@dataclass
class ChunkResult:
    """What one backend read from one chunk: records by slot offset, plus ones it could not place."""

    records: dict[int, dict] = field(default_factory=dict)
    unplaced: list[dict] = field(default_factory=list)
    errors: dict[int | None, str] = field(default_factory=dict)  # slot offset (None: unknown) -> error
    stopped: str | None = None  # why the backend gave up the chunk part way (a panic, its time bound)


def _read_rust(chunk: Chunk, wanted: list[RecordSlot]) -> ChunkResult:
    """Rust backend over the whole chunk (as prescan.for_rust patches it); records matched to slots by
    record id, in order. Only the wanted records are turned into dicts; records it would render wrongly
    or without bound are not taken from it."""
    wanted_offsets = {slot.offset for slot in wanted}
    by_id: dict[int, list[int]] = {}
    for slot in chunk.slots:
        by_id.setdefault(slot.record_id, []).append(slot.offset)
    every = len(wanted) == len(chunk.slots)
    wanted_ids = None if every else {slot.record_id for slot in wanted}
    result = ChunkResult()
    unfit = prescan.unfit(chunk)
    for item in rust.parse_chunk(prescan.for_rust(stitched(chunk), unfit), wanted_ids, chunk.index):
        if isinstance(item, Exception):
            result.errors.setdefault(None, f"(record not located) {item}")
            if isinstance(item, rust.RustPanic | BoundExceeded):
                result.stopped = str(item)
            continue
        record_id, record = item
        offsets = by_id.get(record_id)
        offset = offsets.pop(0) if offsets else None
        if record is None:  # not wanted: left undecoded
            continue
        if isinstance(record, Exception):
            result.errors[offset] = str(record)
        elif offset in unfit:
            result.errors[offset] = unfit[offset].reason
        elif offset is None:
            result.unplaced.append(record)
        elif offset in wanted_offsets:
            result.records[offset] = record
    return result


PURE = "python-evtx"  # pure.NAME: python-evtx is imported by the first chunk read with it (most runs: none)


def _read_pure(chunk: Chunk, wanted: list[RecordSlot]) -> ChunkResult:
    """python-evtx backend, record by record at the walked offsets (only the wanted ones)."""
    result = ChunkResult()
    from evtxcorr.parse import pure

    for slot, record in pure.parse_chunk(chunk.data, wanted):
        if isinstance(record, Exception):
            result.errors[slot.offset] = f"{type(record).__name__}: {record}"
        else:
            result.records[slot.offset] = record
    return result


# Backend name -> chunk reader(chunk, slots wanted) -> ChunkResult. The CLI's choices come from here.
BACKENDS: dict[str, Callable[[Chunk, list[RecordSlot]], ChunkResult]] = {
    rust.NAME: _read_rust,
    PURE: _read_pure,
}


def _other(backend: str) -> str:
    return next(name for name in BACKENDS if name != backend)


@dataclass
class _Tally:
    """Per-file counters gathered while reading, folded into the entry at the end."""

    hosts: set[str] = field(default_factory=set)
    channels: set[str] = field(default_factory=set)
    failures: list[str] = field(default_factory=list)
    failed_chunks: list[str] = field(default_factory=list)
    short_chunks: list[str] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)
    crc_bad: int = 0
    invalid_text: int = 0
    stopped: list[str] = field(default_factory=list)  # chunks a backend gave up part way
    unplaced: int = 0
    trailing: int = 0
    marks: list[Mark] = field(default_factory=list)  # records read
    # at each chunk's ends and next to every loss: enough to find the neighbours of each lost run
    lost_runs: list[tuple[int, int]] = field(default_factory=list)  # record ids lost, inclusive runs
    chunk_ends: dict[int, tuple[datetime, datetime]] = field(default_factory=dict)  # chunk -> times read
    lost_chunks: list[int] = field(default_factory=list)  # chunks lost whose record ids are unknown
    direct: list[tuple[datetime, datetime]] = field(default_factory=list)  # holes placed by neighbours
    rust_banned: Container[int] = frozenset()  # chunks read with python-evtx only (parse's option)
    # chunks read selectively: (index, *_Scanned.ends), turned into marks and chunk_ends only when a loss
    # needs placing (_note_scanned)
    scanned: list[tuple[int, ...]] = field(default_factory=list)


def _finish(record: dict, entry: InputEntry, chunk: Chunk, offset: int, parser: str) -> dict:
    record["file"] = entry.path
    record["input_id"] = entry.id
    record["chunk"] = chunk.index
    record["offset"] = chunk.file_offset + offset
    record["parser"] = parser
    return record


def _read_chunk(
    chunk: Chunk,
    entry: InputEntry,
    backend: str,
    tally: _Tally,
    wanted: list[RecordSlot],
    headers: np.ndarray | range | None = None,
) -> Iterator[dict]:
    """The `wanted` records of one readable chunk, primary backend first, the other for what it missed.
    `headers`: the ids of every record header in the chunk, when only some are decoded (selective); a
    range when they rise by one (the usual chunk).
    A chunk in `tally.rust_banned` is read with python-evtx alone."""
    banned = chunk.index in tally.rust_banned
    if banned:
        backend = PURE
    primary = BACKENDS[backend](chunk, wanted)
    if primary.stopped:
        tally.stopped.append(f"chunk {chunk.index}: {backend} stopped part way ({primary.stopped})")
    taken: dict[int, tuple[dict, str]] = {off: (rec, backend) for off, rec in primary.records.items()}
    missing = [slot for slot in wanted if slot.offset not in taken]
    errors = {off: f"{backend}: {text}" for off, text in primary.errors.items()}
    unplaced = [(rec, backend) for rec in primary.unplaced]
    if (missing or (not taken and not unplaced)) and not banned:
        second = _other(backend)
        fallback = BACKENDS[second](chunk, missing)
        if not taken and not unplaced and fallback.unplaced:  # the walk found no header at all
            unplaced = [(rec, second) for rec in fallback.unplaced]
            entry.recovered += len(unplaced)
        for off, rec in fallback.records.items():
            if off not in taken:
                taken[off] = (rec, second)
                entry.recovered += 1
        for off, text in fallback.errors.items():
            errors[off] = f"{errors[off]}; {second}: {text}" if off in errors else f"{second}: {text}"
        missing = [slot for slot in wanted if slot.offset not in taken]
    for off in sorted(taken):
        rec, parser = taken[off]
        yield _finish(rec, entry, chunk, off, parser)
    for rec, parser in unplaced:  # read by a parser but its header was not found by the walk
        tally.unplaced += 1
        yield _finish(rec, entry, chunk, 0, parser)
    placed = [(rec, off) for off, (rec, _parser) in taken.items()] + [(rec, None) for rec, _p in unplaced]
    unfound = _unfound(chunk, [int(rec["record_id"]) for rec, _off in placed], headers)
    if not (missing or unfound) and placed:  # nothing lost here: the chunk's ends are all a hole needs
        placed = [min(placed, key=_record_id), max(placed, key=_record_id)]
    read = [_mark(rec, chunk, off) for rec, off in placed]
    if unfound:
        entry.records_failed += len(unfound)
        tally.failures.append(
            f"{len(unfound)} record(s) (ids {_id_runs_text(unfound)}) of chunk {chunk.index} could not be "
            "parsed: the chunk header announces them but their record headers are gone "
            "(zeroed or overwritten space)"
        )
    known = [slot for slot in missing if slot.valid or _in_header(chunk, slot.record_id)]
    _note_losses(tally, chunk.index, read, [*(slot.record_id for slot in known), *unfound])
    for slot in missing:
        if slot not in known:  # a damaged header: its id cannot be trusted, its place in the chunk can
            _note_place(tally, chunk, slot.offset, taken)
    if missing:
        # With the header's ids known, a damaged header claiming an id outside them is no record of its
        # own: the records it stands for are among the unfound ids.
        entry.records_failed += len(known) if _announced(chunk.header) is not None else len(missing)
        for slot in missing:
            parts = [errors.get(slot.offset), errors.get(None)]
            reason = "; ".join(p for p in parts if p) or "no backend produced it"
            reason = reason if len(reason) <= 300 else reason[:297] + "..."
            if not slot.valid:
                reason = f"damaged record header (size {slot.size}); {reason}"
            tally.failures.append(
                f"record id {slot.record_id} at offset {chunk.file_offset + slot.offset} "
                f"(chunk {chunk.index}) could not be parsed: {reason}"
            )


def _guarded(
    chunk: Chunk,
    entry: InputEntry,
    backend: str,
    tally: _Tally,
    wanted: list[RecordSlot] | None = None,
    headers: np.ndarray | range | None = None,
) -> list[dict]:
    """_read_chunk (of every record, or of `wanted` with the chunk's `headers`), with anything
    unexpected costing this chunk only (counted, never raised)."""
    before = (entry.records_failed, entry.recovered)
    wanted = chunk.slots if wanted is None else wanted
    try:
        records = list(_read_chunk(chunk, entry, backend, tally, wanted, headers))
        if unfit := prescan.unfit(chunk):
            wanted_at = {slot.offset for slot in wanted}
            tally.invalid_text += sum(f.invalid_text for at, f in unfit.items() if at in wanted_at)
        return records
    except BaseException as exc:  # noqa: BLE001 - a damaged chunk must not stop the file
        if not isinstance(exc, Exception) and not rust.is_panic(exc):
            raise  # KeyboardInterrupt, SystemExit, GeneratorExit; a Rust panic costs the chunk only
        entry.records_failed, entry.recovered = before
        if headers is None:  # the whole chunk was read: every record it held is lost with it
            entry.records_failed += _lost_with(chunk, tally)
        else:  # selective: the records it was to decode are lost; the others were counted undecoded
            entry.records_failed += len(wanted)
            _note_losses(tally, chunk.index, [], [slot.record_id for slot in wanted])
        entry.chunks_failed += 1
        tally.failed_chunks.append(f"chunk {chunk.index} at offset {chunk.file_offset}: {exc}")
        return []


def _note_chunk(chunk: Chunk, entry: InputEntry, tally: _Tally, found: int | None = None) -> bool:
    """Account for one chunk slot; True when it should be read. `found`: its records, when scanned."""
    if chunk.status == "trailing":
        tally.trailing += 1
        return False
    entry.chunks += 1
    if not chunk.readable:
        entry.chunks_failed += 1
        lost = _lost_with(chunk, tally)
        entry.records_failed += lost
        what = "no chunk signature" if chunk.status == "bad-magic" else "truncated chunk"
        tally.failed_chunks.append(
            f"chunk {chunk.index} at offset {chunk.file_offset}: {what}"
            + (f" ({lost} record(s) lost with it)" if lost else "")
        )
        return False
    if chunk.status == "repaired":
        tally.repaired.append(
            f"chunk {chunk.index} at offset {chunk.file_offset}: chunk signature damaged; "
            f"its {len(chunk.slots)} record(s) read with it restored"
        )
    elif not (chunk.header_crc_ok and chunk.data_crc_ok):
        tally.crc_bad += 1
    announced = chunk.header["last_record_id"] - chunk.header["first_record_id"] + 1
    found = len(chunk.slots) if found is None else found
    if found < announced <= MAX_RECORDS_PER_CHUNK:
        tally.short_chunks.append(
            f"chunk {chunk.index}: its header announces {announced} records, "
            f"{found} record headers found (damaged or overwritten space)"
        )
    return True


# --- records lost, and the time spans they leave without evidence ------------------------------------


def _announced(header: dict[str, int]) -> range | None:
    """The record ids a chunk header announces, when its first and last ids are plausible."""
    if not header:
        return None
    first, last = header["first_record_id"], header["last_record_id"]
    if 0 < first <= last and last - first < MAX_RECORDS_PER_CHUNK:
        return range(first, last + 1)
    return None


def _in_header(chunk: Chunk, record_id: int) -> bool:
    announced = _announced(chunk.header)
    return announced is not None and record_id in announced


def _unfound(chunk: Chunk, read: list[int], headers: np.ndarray | range | None = None) -> list[int]:
    """Ids the chunk header announces that were neither read nor found as a record header (`headers`,
    default the chunk's slots)."""
    announced = _announced(chunk.header)
    if announced is None:
        return []
    if headers is None:
        headers = np.fromiter((slot.record_id for slot in chunk.slots), dtype=np.uint64)
    elif isinstance(headers, range):
        if headers == announced:
            return []  # the usual chunk: a header for every announced id
        headers = np.arange(headers.start, headers.stop, dtype=np.uint64)
    # Each announced id marked as seen by position; ids outside the announced range are ignored.
    seen = np.zeros(len(announced), dtype=bool)
    at = headers.astype(np.uint64) - np.uint64(announced.start)  # ids below the range wrap round: too large
    seen[at[at < len(announced)].astype(np.int64)] = True
    seen[[i - announced.start for i in read if i in announced]] = True
    return (np.flatnonzero(~seen) + announced.start).tolist()


def _id_runs(ids: Iterable[int]) -> list[tuple[int, int]]:
    """Sorted ids as inclusive runs of consecutive ids."""
    runs: list[list[int]] = []
    for record_id in sorted(set(ids)):
        if runs and record_id == runs[-1][1] + 1:
            runs[-1][1] = record_id
        else:
            runs.append([record_id, record_id])
    return [(a, b) for a, b in runs]


def _id_runs_text(ids: Iterable[int]) -> str:
    return ", ".join(f"{a}-{b}" if a != b else str(a) for a, b in _id_runs(ids)[:5])


def _lost_with(chunk: Chunk, tally: _Tally) -> int:
    """Records lost with a chunk no backend could read: those its header announces, else the record
    headers a walk finds in it. Their place in time is noted for the holes."""
    header = chunk.header
    if not header and len(chunk.data) >= CHUNK_HEADER_SIZE:
        header = read_fields(chunk.data, CHUNK_HEADER_FIELDS)
    announced = _announced(header)
    if announced is not None:
        _note_losses(tally, chunk.index, [], list(announced))
        return len(announced)
    slots = chunk.slots or (walk_records(chunk.data) if len(chunk.data) >= CHUNK_HEADER_SIZE else [])
    found = [slot.record_id for slot in slots if slot.valid]  # without the free-space offset, the walk
    # also meets the unused space after the last record: only whole record headers count
    _note_losses(tally, chunk.index, [], found, lost_unknown=True)
    return len(found)


# (record id, earliest, latest) of a record read: the earlier and later of its TimeCreated and the time
# its record header says it was written. A record lost between two others was written between them, and
# was created no later than it was written.
Mark = tuple[int, datetime, datetime]


def _mark(record: dict, chunk: Chunk | None = None, offset: int | None = None) -> Mark:
    created = record["time"]
    times = [created] if _placeable(created) else []
    if chunk is not None and offset is not None and offset + 24 <= len(chunk.data):  # header time
        try:
            written = filetime_to_datetime(struct.unpack_from("<Q", chunk.data, offset + 16)[0])
        except OverflowError:  # a damaged header's time past year 9999
            written = None
        times += [written] if _placeable(written) else []
    times = times or [_EARLIEST]  # a record with no usable time: it bounds nothing (see _placed)
    return int(record["record_id"]), min(times), max(times)


def _record_id(item: tuple[dict, int | None]) -> int:
    return int(item[0]["record_id"])


def _placed(marks: Iterable[Mark]) -> list[Mark]:
    return sorted(mark for mark in marks if mark[1] != _EARLIEST)


def _note_losses(
    tally: _Tally, index: int, read: list[Mark], lost: list[int], *, lost_unknown: bool = False
) -> None:
    """Remember what locates this chunk's losses in time: its records' ids and times at the chunk's ends
    and on each side of every lost run. `lost_unknown`: records were lost whose ids are not known."""
    marks = _placed(read)
    if marks:
        _note_ends(tally, index, marks[0], marks[-1], (min(m[1] for m in marks), max(m[2] for m in marks)))
    runs = _id_runs(lost)
    ids = [mark[0] for mark in marks]
    for first, last in runs:
        before, after = bisect.bisect_left(ids, first), bisect.bisect_right(ids, last)
        tally.marks += marks[max(0, before - 1) : before] + marks[after : after + 1]
    tally.lost_runs += runs
    if lost_unknown:
        tally.lost_chunks.append(index)


def _note_ends(tally: _Tally, index: int, first: Mark, last: Mark, span: tuple[datetime, datetime]) -> None:
    """A chunk's first and last records by id, and the time its records span (merged when noted twice)."""
    tally.marks += [first, last]
    if index in tally.chunk_ends:
        known = tally.chunk_ends[index]
        span = (min(span[0], known[0]), max(span[1], known[1]))
    tally.chunk_ends[index] = span


def _note_scanned(tally: _Tally) -> None:
    """The ends of the chunks read selectively (tally.scanned), from their record headers' written times
    (all of their records): their first and last records by id, and the time they span."""
    for index, records, low, high, first_id, first_time, last_id, last_time in tally.scanned:
        if not records:
            continue
        try:
            times = [filetime_to_datetime(low), filetime_to_datetime(high)]
            ends = [filetime_to_datetime(first_time), filetime_to_datetime(last_time)]
        except OverflowError:  # a header's time past year 9999: it bounds nothing
            continue
        if not all(_placeable(t) for t in times):
            continue
        marks = [(first_id, ends[0], ends[0]), (last_id, ends[1], ends[1])]
        _note_ends(tally, index, marks[0], marks[1], (times[0], times[1]))
    tally.scanned.clear()


def _note_place(tally: _Tally, chunk: Chunk, offset: int, taken: dict[int, tuple[dict, str]]) -> None:
    """A record lost at `offset` whose id is unknown: between the records read before and after it in
    the chunk, or, without both, anywhere between the neighbouring chunks."""
    before = _placed(_mark(taken[off][0], chunk, off) for off in sorted(taken) if off < offset)
    after = _placed(_mark(taken[off][0], chunk, off) for off in sorted(taken) if off > offset)
    if before and after:
        lo, hi = min(before[-1][1], after[0][1]), max(before[-1][2], after[0][2])
        tally.direct.append((lo - HOLE_MARGIN, hi + HOLE_MARGIN))
    else:
        tally.lost_chunks.append(chunk.index)


def _placeable(time: object) -> bool:
    """A time pandas can hold (a damaged record may say 1601): only those bound a hole."""
    return isinstance(time, datetime) and time.tzinfo is not None and _EARLIEST < time < _LATEST


# Times pandas can hold (1677-09-21 00:12:43.145224193 to 2262-04-11 23:47:16.854775807), a day in
# from its limits: room for HOLE_MARGIN on either side. Written out: parsing never imports pandas.
_EARLIEST = datetime(1677, 9, 22, 0, 12, 44, tzinfo=UTC)
_LATEST = datetime(2262, 4, 10, 23, 47, 16, tzinfo=UTC)


Hole = tuple[datetime | None, datetime | None]


def _when(time: datetime | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC") if time is not None else "(open)"


def _holes(tally: _Tally) -> list[Hole]:
    """Time spans where records were lost, each between the nearest records read on either side (None:
    no record read on that side, the hole is open). A chunk lost with unknown ids lies between its
    neighbours in the file; at the wrap of a circular log (newest chunk, then oldest) it is open both ways."""
    if tally.lost_runs or tally.lost_chunks:
        _note_scanned(tally)
    marks = sorted(set(tally.marks))
    ids = [mark[0] for mark in marks]
    holes: list[Hole] = list(tally.direct)
    for first, last in tally.lost_runs:
        before, after = bisect.bisect_left(ids, first), bisect.bisect_right(ids, last)
        edges = marks[before - 1 : before] + marks[after : after + 1]
        lo = min(m[1] for m in edges) - HOLE_MARGIN if before else None
        hi = max(m[2] for m in edges) + HOLE_MARGIN if after < len(marks) else None
        holes.append((lo, hi))
    for index in sorted(set(tally.lost_chunks)):
        earlier = [i for i in tally.chunk_ends if i < index]
        later = [i for i in tally.chunk_ends if i > index]
        lo = tally.chunk_ends[max(earlier)][1] - HOLE_MARGIN if earlier else None
        hi = tally.chunk_ends[min(later)][0] + HOLE_MARGIN if later else None
        if lo is not None and hi is not None and lo > hi:
            holes += [(None, hi), (lo, None)]
        else:
            holes.append((lo, hi))
    return _merge_holes(holes)


def _merge_holes(holes: list[Hole]) -> list[Hole]:
    def key(hole: Hole) -> tuple[bool, datetime | str]:
        return (hole[0] is not None, hole[0] or "")

    merged: list[Hole] = []
    for lo, hi in sorted(set(holes), key=key):
        if merged:
            prev_lo, prev_hi = merged[-1]
            if prev_hi is None or (lo is not None and lo <= prev_hi) or lo is None:
                merged[-1] = (prev_lo, None if prev_hi is None or hi is None else max(prev_hi, hi))
                continue
        merged.append((lo, hi))
    return merged


def _check_header(source: Source, entry: InputEntry) -> FileHeader | None:
    """Warn about the file header; None when the file cannot be an EVTX file at all."""
    with source.path.open("rb") as fh:
        head = fh.read(4096)
    header = parse_file_header(head)
    if header is None or len(head) < FILE_HEADER_SIZE:  # cut inside its header: no chunk can follow
        entry.skip(f"shorter than an EVTX file header ({len(head)} of {FILE_HEADER_SIZE} bytes; cut short)")
        return None
    if not header.magic_ok:
        entry.warn("file header has no ElfFile signature; chunks read anyway")
    elif not header.crc_ok:
        entry.warn("file header CRC32 does not match")
    # A dirty flag alone is normal (every log copied off a live host has it); what matters, chunks past
    # the header's count, is reported by _fold once they are found.
    return header


def _fold(entry: InputEntry, source: Source, tally: _Tally, header_chunks: int | None) -> None:
    entry.hosts = sorted(tally.hosts)
    entry.channels = sorted(tally.channels)
    entry.holes = _holes(tally)
    if entry.holes:
        spans = "; ".join(f"{_when(lo)} to {_when(hi)}" for lo, hi in entry.holes[:MAX_LOCATED_FAILURES])
        more = (
            f" (and {len(entry.holes) - MAX_LOCATED_FAILURES} more)"
            if len(entry.holes) > MAX_LOCATED_FAILURES
            else ""
        )
        entry.warn(
            f"records lost between {spans}{more}: this log cannot vouch that an event did not happen then"
        )
    if header_chunks is not None and entry.chunks > header_chunks:
        entry.warn(f"header declares {header_chunks} chunks, {entry.chunks} found (all read)")
    if tally.crc_bad:
        entry.warn(f"{tally.crc_bad} chunk(s) fail their CRC32 check (read anyway)")
    for text in tally.repaired[:MAX_LOCATED_FAILURES] + tally.stopped[:MAX_LOCATED_FAILURES]:
        entry.warn(text)
    if tally.trailing:
        entry.warn(f"{tally.trailing} 64 KiB block(s) after the last chunk hold no chunk (unused space)")
    if tally.invalid_text:
        entry.warn(
            f"{tally.invalid_text} record(s) hold invalid UTF-16 text (lone surrogates), shown as U+FFFD: "
            "read with python-evtx (the evtx backend drops such characters)"
        )
    if tally.unplaced:
        entry.warn(f"{tally.unplaced} record(s) read without a located record header (offset is the chunk's)")
    located = tally.failed_chunks + tally.short_chunks
    for text in located[:MAX_LOCATED_FAILURES] + tally.failures[:MAX_LOCATED_FAILURES]:
        entry.warn(text)
    hidden = max(0, len(tally.failures) - MAX_LOCATED_FAILURES)
    if hidden:
        entry.warn(f"... and {hidden} more unparsed record(s)")
    _check_hints(entry, source)
    problems = []
    if entry.records_failed:
        problems.append(f"{entry.records_failed} record(s) could not be parsed")
    if entry.chunks_failed:
        problems.append(f"{entry.chunks_failed} chunk(s) unreadable")
    if problems:
        entry.degrade("; ".join(problems))
    if not entry.chunks and entry.status != "skipped":
        entry.warn("the log holds no chunks (an empty log)")


def _loose(channel: str) -> str:
    """A channel name compared loosely: collectors spell '/' as '%4', '-' or '_' in file names."""
    return re.sub(r"[^0-9a-z]", "", channel.lower())


def _check_hints(entry: InputEntry, source: Source) -> None:
    if source.host_hint and entry.hosts:
        expected = host_key(source.host_hint)
        others = sorted({h for h in entry.hosts if host_key(h) != expected})
        if others:
            entry.warn(
                f"file name names host {source.host_hint} but records were written by {', '.join(others)}"
            )
    hint = source.channel_hint
    if hint and entry.channels and all(_loose(c) != _loose(hint) for c in entry.channels):
        entry.warn(f"file name names channel {hint} but records are from {', '.join(entry.channels)}")


PROGRESS_CHUNKS = 64  # chunks (4 MiB) between progress calls
SCAN_BATCH = 128  # chunks scanned together (8 MiB): numpy's per-call cost is paid once per batch


class _Scanned:
    """One chunk's records as scanned (a slice of a scan.ScanBatch), what of them to decode, and the
    totals its ledger needs: `records`, and `ends` (earliest and latest written time; id and written
    time of its first and of its last record by id)."""

    __slots__ = ("batch", "position", "records", "ends", "mask")

    def __init__(
        self, batch: scan.ScanBatch, position: int, ends: tuple[int, ...], mask: np.ndarray | None
    ) -> None:
        self.batch, self.position, self.mask = batch, position, mask
        self.records, self.ends = ends[0], ends[1:]

    def _of_chunk(self, values: np.ndarray) -> np.ndarray:
        """This chunk's part of one of the batch's arrays over records."""
        return values[self.batch.bounds[self.position] : self.batch.bounds[self.position + 1]]

    def decode(self, chunk: Chunk) -> tuple[list[RecordSlot], np.ndarray | range]:
        """Set `chunk` up to decode the records of `mask` (chunk.slots: the record at 512 first, blanked
        when not wanted; chunk.records_end) and return (the wanted slots, the ids of every record
        header: a range when they rise by one)."""
        assert self.mask is not None
        positions = np.flatnonzero(self.mask).tolist()
        lead = positions[0] != 0
        chunk.slots = self.batch.slots(self.position, [0, *positions] if lead else positions)
        chunk.lead_blank = lead
        chunk.records_end = self.batch.records_end(self.position)
        headers = (
            range(self.ends[2], self.ends[4] + 1)
            if self.batch.rising_by_one()[self.position]
            else self._of_chunk(self.batch.record_ids)
        )
        return chunk.slots[1:] if lead else chunk.slots, headers


def _joined(chunks: list[Chunk]) -> memoryview | None:
    """The chunks as they lie in the block iter_chunks read, when they are its consecutive 64 KiB parts
    (the usual batch): the scan reads them there instead of a copy."""
    if not chunks or not isinstance(chunks[0].raw, memoryview):
        return None
    block, start = chunks[0].raw.obj, chunks[0].block_at
    for number, chunk in enumerate(chunks):
        raw = chunk.raw
        if not (isinstance(raw, memoryview) and raw.obj is block and len(raw) == CHUNK_SIZE):
            return None
        if chunk.block_at != start + number * CHUNK_SIZE:
            return None
    return memoryview(block)[start : start + len(chunks) * CHUNK_SIZE]  # type: ignore[arg-type]


def _scanned(chunks: Iterator[Chunk], wanted: Wanted | None) -> Iterator[tuple[Chunk, _Scanned | None]]:
    """Each chunk with its scanned records and the mask of those to decode (`mask` None: none); None when
    the chunk is decoded whole (no `wanted`, damaged, repaired, or a layout the scan cannot account for
    exactly). A chunk none of whose records has a wanted event id is settled without any per-chunk
    numpy work: it is most of a large log."""
    first = True
    batch: list[Chunk] = []
    scratch: bytearray | None = None  # made when a batch is not one run of a block (rare)

    def flush() -> Iterator[tuple[Chunk, _Scanned | None]]:
        nonlocal first, scratch
        sound = [c for c in batch if c.status == "ok" and c.header_crc_ok and c.data_crc_ok]
        # Providers wanted whatever the event id: every record's provider is read and looked at.
        table = None if wanted.any_event_id else wanted.id_table  # type: ignore[union-attr]
        joined = _joined(sound)
        if joined is None and scratch is None:
            scratch = bytearray(SCAN_BATCH * CHUNK_SIZE)
        found = scan.scan_batch([(c.raw, c.end) for c in sound], table, scratch, joined=joined)
        unsure = found.per_chunk(found.unsure).tolist()
        selected = scan.select(found, wanted)  # type: ignore[arg-type]
        picked = found.per_chunk(selected).tolist()
        ends = list(zip(*found.ends(), strict=True))
        bad = found.bad.tolist()
        position = 0
        for chunk in batch:
            scanned = None
            if position < len(sound) and sound[position] is chunk:
                # a record of unexpected layout (damage? forwarded?): the chunk is read whole
                if not bad[position] and not unsure[position]:
                    mask = None
                    scanned = _Scanned(found, position, ends[position], None)
                    if picked[position]:
                        mask = selected[found.bounds[position] : found.bounds[position + 1]].copy()
                    if first and scanned.records:
                        # the file's first record says whose log it is (host, channel)
                        if mask is None:
                            mask = np.zeros(scanned.records, dtype=bool)
                        mask[0] = True
                    scanned.mask = mask
                position += 1
            if chunk.readable:
                first = False
            yield chunk, scanned
        batch.clear()

    for chunk in chunks:
        if wanted is None:
            yield chunk, None
            continue
        batch.append(chunk)
        if len(batch) >= SCAN_BATCH:
            yield from flush()
    if batch:
        yield from flush()


def _count_undecoded(entry: InputEntry, scanned: _Scanned) -> None:
    """Records counted from their headers only: part of `records`, and of the undecoded time span."""
    if scanned.mask is None:
        count, low, high = scanned.records, scanned.ends[0], scanned.ends[1]
    else:
        left = ~scanned.mask
        count = int(left.sum())
        if count:
            ticks = scanned._of_chunk(scanned.batch.written)[left]
            low, high = int(ticks.min()), int(ticks.max())
    if not count:
        return
    entry.records += count
    entry.records_undecoded += count
    if entry.undecoded_span is None:
        entry.undecoded_span = (low, high)
    else:
        entry.undecoded_span = (min(low, entry.undecoded_span[0]), max(high, entry.undecoded_span[1]))


def parse(
    source: Source,
    entry: InputEntry,
    *,
    backend: str = "evtx",
    chunk_filter: Callable[[bytes], bool] | None = None,
    wanted: Wanted | None = None,
    on_progress: Callable[[int], None] | None = None,
    rust_banned: Container[int] = frozenset(),
) -> Iterator[dict]:
    """Records of one EVTX source, in file order, with provenance (file, chunk, offset, parser).

    `chunk_filter(raw_chunk_bytes)` returning False skips a chunk unparsed (`entry.chunks_skipped`).
    `wanted` (ruleset.wanted.wanted_pairs): decode only records whose (provider, event id) a rule may
    match, plus the file's first record; the others are counted from their record headers
    (`entry.records_undecoded`, `entry.undecoded_span`) and a chunk with none is not decoded at all.
    `on_progress(bytes_scanned)` is called every PROGRESS_CHUNKS chunks.
    `rust_banned`: indexes of chunks read with python-evtx alone (their Rust calls killed a guarded
    child process: guard.py, which runs parse() for every caller).
    The entry is updated as reading goes and finalised when the iterator ends or is closed.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
    entry.format = "evtx"
    tally = _Tally(rust_banned=rust_banned)
    header_chunks: int | None = None
    try:
        header = _check_header(source, entry)
        if header is None:
            return
        header_chunks = header.chunk_count
        for chunk, scanned in _scanned(iter_chunks(source.path), wanted):
            if on_progress is not None and chunk.index % PROGRESS_CHUNKS == 0:
                on_progress(chunk.file_offset)
            if not _note_chunk(chunk, entry, tally, None if scanned is None else scanned.records):
                continue
            if chunk_filter is not None and not chunk_filter(chunk.data):
                entry.chunks_skipped += 1
                continue
            subset = headers = None
            if scanned is not None:
                _count_undecoded(entry, scanned)
                tally.scanned.append((chunk.index, scanned.records, *scanned.ends))
                if scanned.mask is None:
                    entry.chunks_skipped += 1
                    continue
                subset, headers = scanned.decode(chunk)
            for record in _guarded(chunk, entry, backend, tally, subset, headers):
                entry.records += 1
                tally.hosts.add(record["host"])
                tally.channels.add(record["channel"])
                yield record
    except OSError as exc:
        if entry.records:
            entry.degrade(f"read error part way: {exc.strerror or exc}")
        else:
            entry.skip(f"unreadable: {exc.strerror or exc}")
    finally:
        if entry.status != "skipped":
            _fold(entry, source, tally, header_chunks)


def read_source(
    source: Source,
    entry: InputEntry,
    *,
    backend: str = "evtx",
    source_tz: str | None = None,
    wanted: Wanted | None = None,
    on_progress: Callable[[int], None] | None = None,
    workers: Workers | None = None,
) -> Iterator[dict]:
    """Records of a source of any kind: .evtx through parse() (selectively with `wanted`) in a guarded
    child process (guard.py; one of `workers` when given), an export (XML, CSV, JSON) through its
    reader in parse/exports/ (READERS, keyed by Source.kind)."""
    from evtxcorr.parse.exports import READERS
    from evtxcorr.parse.guard import parse_guarded

    if source.kind == "evtx":
        return parse_guarded(
            source, entry, backend=backend, wanted=wanted, on_progress=on_progress, workers=workers
        )
    return READERS[source.kind](source, entry, source_tz=source_tz)
