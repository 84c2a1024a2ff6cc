"""Stage 2: one EVTX source -> record dicts (model.RECORD_FIELDS), with every record accounted for.

The file is split into chunks here (chunks.py); a backend reads one chunk at a time. Where the chosen
backend misses records of a chunk, the other backend reads that chunk and the records it recovers
are taken (`entry.recovered`); records whose header was found but that neither backend read are
`entry.records_failed`. Nothing raised while reading a damaged file escapes parse().
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from evtxcorr.ledger import InputEntry
from evtxcorr.model import Source
from evtxcorr.parse import pure, rust, scan
from evtxcorr.parse.chunks import Chunk, FileHeader, RecordSlot, iter_chunks, parse_file_header, stitched
from evtxcorr.ruleset.wanted import Wanted

__all__ = ["BACKENDS", "ChunkResult", "parse", "read_source"]

MAX_LOCATED_FAILURES = 5  # failed records named one by one in the warnings; the rest are summed
MAX_RECORDS_PER_CHUNK = (65536 - 512) // 32  # a chunk header announcing more is itself damaged


@dataclass
class ChunkResult:
    """What one backend read from one chunk: records by slot offset, plus ones it could not place."""

    records: dict[int, dict] = field(default_factory=dict)
    unplaced: list[dict] = field(default_factory=list)
    errors: dict[int | None, str] = field(default_factory=dict)  # slot offset (None: unknown) -> error


def _read_rust(chunk: Chunk, wanted: list[RecordSlot]) -> ChunkResult:
    """Rust backend over the whole chunk; records matched to slots by record id, in order. Only the
    wanted records are turned into dicts."""
    wanted_offsets = {slot.offset for slot in wanted}
    by_id: dict[int, list[int]] = {}
    for slot in chunk.slots:
        by_id.setdefault(slot.record_id, []).append(slot.offset)
    every = len(wanted) == len(chunk.slots)
    wanted_ids = None if every else {slot.record_id for slot in wanted}
    result = ChunkResult()
    for item in rust.parse_chunk(stitched(chunk), wanted_ids):
        if isinstance(item, Exception):
            result.errors.setdefault(None, f"(record not located) {item}")
            continue
        record_id, record = item
        offsets = by_id.get(record_id)
        offset = offsets.pop(0) if offsets else None
        if record is None:  # not wanted: left undecoded
            continue
        if isinstance(record, Exception):
            result.errors[offset] = str(record)
        elif offset is None:
            result.unplaced.append(record)
        elif offset in wanted_offsets:
            result.records[offset] = record
    return result


def _read_pure(chunk: Chunk, wanted: list[RecordSlot]) -> ChunkResult:
    """python-evtx backend, record by record at the walked offsets (only the wanted ones)."""
    result = ChunkResult()
    for slot, record in pure.parse_chunk(chunk.data, wanted):
        if isinstance(record, Exception):
            result.errors[slot.offset] = f"{type(record).__name__}: {record}"
        else:
            result.records[slot.offset] = record
    return result


# Backend name -> chunk reader(chunk, slots wanted) -> ChunkResult. The CLI's choices come from here.
BACKENDS: dict[str, Callable[[Chunk, list[RecordSlot]], ChunkResult]] = {
    rust.NAME: _read_rust,
    pure.NAME: _read_pure,
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
    unplaced: int = 0
    trailing: int = 0


def _finish(record: dict, entry: InputEntry, chunk: Chunk, offset: int, parser: str) -> dict:
    record["file"] = entry.path
    record["input_id"] = entry.id
    record["chunk"] = chunk.index
    record["offset"] = chunk.file_offset + offset
    record["parser"] = parser
    return record


def _read_chunk(
    chunk: Chunk, entry: InputEntry, backend: str, tally: _Tally, wanted: list[RecordSlot]
) -> Iterator[dict]:
    """The `wanted` records of one readable chunk, primary backend first, the other for what it missed."""
    primary = BACKENDS[backend](chunk, wanted)
    taken: dict[int, tuple[dict, str]] = {off: (rec, backend) for off, rec in primary.records.items()}
    missing = [slot for slot in wanted if slot.offset not in taken]
    errors = {off: f"{backend}: {text}" for off, text in primary.errors.items()}
    unplaced = [(rec, backend) for rec in primary.unplaced]
    if missing or (not taken and not unplaced):
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
    if missing:
        entry.records_failed += len(missing)
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
    chunk: Chunk, entry: InputEntry, backend: str, tally: _Tally, wanted: list[RecordSlot] | None = None
) -> list[dict]:
    """_read_chunk (of every record, or of `wanted`), with anything unexpected costing this chunk only
    (counted, never raised)."""
    before = (entry.records_failed, entry.recovered)
    wanted = chunk.slots if wanted is None else wanted
    try:
        return list(_read_chunk(chunk, entry, backend, tally, wanted))
    except Exception as exc:  # noqa: BLE001 - a damaged chunk must not stop the file
        entry.records_failed, entry.recovered = before
        entry.records_failed += len(wanted)
        entry.chunks_failed += 1
        tally.failed_chunks.append(f"chunk {chunk.index} at offset {chunk.file_offset}: {exc}")
        return []


def _note_chunk(chunk: Chunk, entry: InputEntry, tally: _Tally, keys: scan.RecordKeys | None = None) -> bool:
    """Account for one chunk slot; True when it should be read. `keys`: its records as scanned."""
    if chunk.status == "trailing":
        tally.trailing += 1
        return False
    entry.chunks += 1
    if not chunk.readable:
        entry.chunks_failed += 1
        what = "no chunk signature" if chunk.status == "bad-magic" else "truncated chunk"
        tally.failed_chunks.append(f"chunk {chunk.index} at offset {chunk.file_offset}: {what}")
        return False
    if chunk.status == "repaired":
        tally.repaired.append(
            f"chunk {chunk.index} at offset {chunk.file_offset}: chunk signature damaged; "
            f"its {len(chunk.slots)} record(s) read with it restored"
        )
    elif not (chunk.header_crc_ok and chunk.data_crc_ok):
        tally.crc_bad += 1
    announced = chunk.header["last_record_id"] - chunk.header["first_record_id"] + 1
    found = len(keys) if keys is not None else len(chunk.slots)
    if found < announced <= MAX_RECORDS_PER_CHUNK:
        tally.short_chunks.append(
            f"chunk {chunk.index}: its header announces {announced} records, "
            f"{found} record headers found (damaged or overwritten space)"
        )
    return True


def _check_header(source: Source, entry: InputEntry) -> FileHeader | None:
    """Warn about the file header; None when the file cannot be an EVTX file at all."""
    with source.path.open("rb") as fh:
        head = fh.read(4096)
    header = parse_file_header(head)
    if header is None:
        entry.skip("shorter than an EVTX file header")
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
    if header_chunks is not None and entry.chunks > header_chunks:
        entry.warn(f"header declares {header_chunks} chunks, {entry.chunks} found (all read)")
    if tally.crc_bad:
        entry.warn(f"{tally.crc_bad} chunk(s) fail their CRC32 check (read anyway)")
    for text in tally.repaired[:MAX_LOCATED_FAILURES]:
        entry.warn(text)
    if tally.trailing:
        entry.warn(f"{tally.trailing} 64 KiB block(s) after the last chunk hold no chunk (unused space)")
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


def short_host(name: str) -> str:
    """Lower-case host name up to the first dot: how hosts are compared across logs."""
    return name.strip().split(".", 1)[0].lower()


def _loose(channel: str) -> str:
    """A channel name compared loosely: collectors spell '/' as '%4', '-' or '_' in file names."""
    return re.sub(r"[^0-9a-z]", "", channel.lower())


def _check_hints(entry: InputEntry, source: Source) -> None:
    if source.host_hint and entry.hosts:
        expected = short_host(source.host_hint)
        others = sorted({h for h in entry.hosts if short_host(h) != expected})
        if others:
            entry.warn(
                f"file name names host {source.host_hint} but records were written by {', '.join(others)}"
            )
    hint = source.channel_hint
    if hint and entry.channels and all(_loose(c) != _loose(hint) for c in entry.channels):
        entry.warn(f"file name names channel {hint} but records are from {', '.join(entry.channels)}")


PROGRESS_CHUNKS = 64  # chunks (4 MiB) between progress calls
SCAN_BATCH = 128  # chunks scanned together (8 MiB): numpy's per-call cost is paid once per batch


def _scanned(
    chunks: Iterator[Chunk], wanted: Wanted | None
) -> Iterator[tuple[Chunk, scan.RecordKeys | None, np.ndarray | None]]:
    """Each chunk with its scanned records and the mask of those to decode; (None, None) when the chunk
    is decoded whole (no `wanted`, damaged, repaired, or a layout the scan cannot account for exactly)."""
    first = True
    batch: list[Chunk] = []

    def flush() -> Iterator[tuple[Chunk, scan.RecordKeys | None, np.ndarray | None]]:
        nonlocal first
        sound = [c for c in batch if c.status == "ok" and c.header_crc_ok and c.data_crc_ok]
        table = wanted.id_table  # type: ignore[union-attr]
        found = dict(
            zip(map(id, sound), scan.scan_many([(c.data, c.end) for c in sound], table), strict=True)
        )
        for chunk in batch:
            keys = found.get(id(chunk))
            if keys is not None and keys.unsure.any():
                keys = None  # a record of unexpected layout (damage? forwarded?): the chunk is read whole
            mask = None
            if keys is not None:
                mask = scan.select(chunk.data, keys, wanted)  # type: ignore[arg-type]
                if first and len(mask):
                    mask[0] = True  # the file's first record says whose log it is (host, channel)
            if chunk.readable:
                first = False
            yield chunk, keys, mask
        batch.clear()

    for chunk in chunks:
        if wanted is None:
            yield chunk, None, None
            continue
        batch.append(chunk)
        if len(batch) >= SCAN_BATCH:
            yield from flush()
    if batch:
        yield from flush()


def _count_undecoded(entry: InputEntry, keys: scan.RecordKeys, mask: np.ndarray) -> None:
    """Records counted from their headers only: part of `records`, and of the undecoded time span."""
    left = ~mask
    count = int(left.sum())
    if not count:
        return
    entry.records += count
    entry.records_undecoded += count
    ticks = keys.written[left]
    low, high = int(ticks.min()), int(ticks.max())
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
) -> Iterator[dict]:
    """Records of one EVTX source, in file order, with provenance (file, chunk, offset, parser).

    `chunk_filter(raw_chunk_bytes)` returning False skips a chunk unparsed (`entry.chunks_skipped`).
    `wanted` (ruleset.wanted.wanted_pairs): decode only records whose (provider, event id) a rule may
    match, plus the file's first record; the others are counted from their record headers
    (`entry.records_undecoded`, `entry.undecoded_span`) and a chunk with none is not decoded at all.
    `on_progress(bytes_scanned)` is called every PROGRESS_CHUNKS chunks.
    The entry is updated as reading goes and finalised when the iterator ends or is closed.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
    entry.format = "evtx"
    tally = _Tally()
    header_chunks: int | None = None
    try:
        header = _check_header(source, entry)
        if header is None:
            return
        header_chunks = header.chunk_count
        for chunk, keys, mask in _scanned(iter_chunks(source.path), wanted):
            if on_progress is not None and chunk.index % PROGRESS_CHUNKS == 0:
                on_progress(chunk.file_offset)
            if not _note_chunk(chunk, entry, tally, keys):
                continue
            if chunk_filter is not None and not chunk_filter(chunk.data):
                entry.chunks_skipped += 1
                continue
            subset = None
            if keys is not None and mask is not None:
                _count_undecoded(entry, keys, mask)
                if not mask.any():
                    entry.chunks_skipped += 1
                    continue
                subset = keys.slots(np.flatnonzero(mask))
                chunk.slots = subset if mask[0] else [*keys.slots(np.zeros(1, dtype=np.int64)), *subset]
                chunk.records_end = int(keys.offsets[-1] + keys.sizes[-1])
            for record in _guarded(chunk, entry, backend, tally, subset):
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
) -> Iterator[dict]:
    """Records of a source of any kind: .evtx through parse() (selectively with `wanted`), an export
    (XML, CSV, JSON) through its reader in parse/exports/ (READERS, keyed by Source.kind)."""
    from evtxcorr.parse.exports import READERS

    if source.kind == "evtx":
        return parse(source, entry, backend=backend, wanted=wanted, on_progress=on_progress)
    return READERS[source.kind](source, entry, source_tz=source_tz)
