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

from evtxcorr.ledger import InputEntry
from evtxcorr.model import Source
from evtxcorr.parse import prescan, pure, rust
from evtxcorr.parse.chunks import (
    FILE_HEADER_SIZE,
    Chunk,
    FileHeader,
    RecordSlot,
    iter_chunks,
    parse_file_header,
)

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
    """Rust backend over the whole chunk (as prescan.for_rust patches it); records matched to slots by
    record id, in order. Records it would render wrongly or without bound are not taken from it."""
    wanted_offsets = {slot.offset for slot in wanted}
    by_id: dict[int, list[int]] = {}
    for slot in chunk.slots:
        by_id.setdefault(slot.record_id, []).append(slot.offset)
    result = ChunkResult()
    unfit = prescan.unfit(chunk)
    for item in rust.parse_chunk(prescan.for_rust(chunk.data, unfit)):
        if isinstance(item, Exception):
            result.errors.setdefault(None, f"(record not located) {item}")
            continue
        record_id, record = item
        offsets = by_id.get(record_id)
        offset = offsets.pop(0) if offsets else None
        if isinstance(record, Exception):
            result.errors[offset] = str(record)
        elif offset in unfit:
            result.errors[offset] = unfit[offset].reason
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
    invalid_text: int = 0
    unplaced: int = 0
    trailing: int = 0


def _finish(record: dict, entry: InputEntry, chunk: Chunk, offset: int, parser: str) -> dict:
    record["file"] = entry.path
    record["input_id"] = entry.id
    record["chunk"] = chunk.index
    record["offset"] = chunk.file_offset + offset
    record["parser"] = parser
    return record


def _read_chunk(chunk: Chunk, entry: InputEntry, backend: str, tally: _Tally) -> Iterator[dict]:
    """The records of one readable chunk, primary backend first, the other for what it missed."""
    primary = BACKENDS[backend](chunk, chunk.slots)
    taken: dict[int, tuple[dict, str]] = {off: (rec, backend) for off, rec in primary.records.items()}
    missing = [slot for slot in chunk.slots if slot.offset not in taken]
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
        missing = [slot for slot in chunk.slots if slot.offset not in taken]
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


def _guarded(chunk: Chunk, entry: InputEntry, backend: str, tally: _Tally) -> list[dict]:
    """_read_chunk, with anything unexpected costing this chunk only (counted, never raised)."""
    before = (entry.records_failed, entry.recovered)
    try:
        records = list(_read_chunk(chunk, entry, backend, tally))
        tally.invalid_text += sum(finding.invalid_text for finding in prescan.unfit(chunk).values())
        return records
    except BaseException as exc:  # noqa: BLE001 - a damaged chunk must not stop the file
        if not isinstance(exc, Exception) and not rust.is_panic(exc):
            raise  # KeyboardInterrupt, SystemExit, GeneratorExit; a Rust panic costs the chunk only
        entry.records_failed, entry.recovered = before
        entry.records_failed += len(chunk.slots)
        entry.chunks_failed += 1
        tally.failed_chunks.append(f"chunk {chunk.index} at offset {chunk.file_offset}: {exc}")
        return []


def _note_chunk(chunk: Chunk, entry: InputEntry, tally: _Tally) -> bool:
    """Account for one chunk slot; True when it should be read."""
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
    if len(chunk.slots) < announced <= MAX_RECORDS_PER_CHUNK:
        tally.short_chunks.append(
            f"chunk {chunk.index}: its header announces {announced} records, "
            f"{len(chunk.slots)} record headers found (damaged or overwritten space)"
        )
    return True


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
    if header_chunks is not None and entry.chunks > header_chunks:
        entry.warn(f"header declares {header_chunks} chunks, {entry.chunks} found (all read)")
    if tally.crc_bad:
        entry.warn(f"{tally.crc_bad} chunk(s) fail their CRC32 check (read anyway)")
    for text in tally.repaired[:MAX_LOCATED_FAILURES]:
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


def parse(
    source: Source,
    entry: InputEntry,
    *,
    backend: str = "evtx",
    chunk_filter: Callable[[bytes], bool] | None = None,
) -> Iterator[dict]:
    """Records of one EVTX source, in file order, with provenance (file, chunk, offset, parser).

    `chunk_filter(raw_chunk_bytes)` returning False skips a chunk unparsed (`entry.chunks_skipped`).
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
        for chunk in iter_chunks(source.path):
            if not _note_chunk(chunk, entry, tally):
                continue
            if chunk_filter is not None and not chunk_filter(chunk.data):
                entry.chunks_skipped += 1
                continue
            for record in _guarded(chunk, entry, backend, tally):
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
    source: Source, entry: InputEntry, *, backend: str = "evtx", source_tz: str | None = None
) -> Iterator[dict]:
    """Records of a source of any kind: .evtx through parse(), an export (XML, CSV, JSON) through
    its reader in parse/exports/ (READERS, keyed by Source.kind)."""
    from evtxcorr.parse.exports import READERS

    if source.kind == "evtx":
        return parse(source, entry, backend=backend)
    return READERS[source.kind](source, entry, source_tz=source_tz)
