"""Write ForgedEvents as a real .evtx file: 4 KiB header, 64 KiB chunks, template-instance records.

Records are laid down in the order given, never straddle chunks, and each chunk re-defines the templates
it uses (inline on first use, referenced by offset after), with the name and template tables filled in
as Windows does. Same events in, same bytes out.
"""

from __future__ import annotations

import gc
import struct
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from evtxcorr.forge.binxml import FRAGMENT_HEADER, ChunkTables, descriptor, template_instance
from evtxcorr.forge.damage import Damage, apply_damage
from evtxcorr.forge.events import ForgedEvent
from evtxcorr.forge.shapes import payload_part, system_part
from evtxcorr.forge.structs import (
    CHUNK_HEADER,
    CHUNK_HEADER_SIZE,
    CHUNK_MAGIC,
    CHUNK_RECORDS_START,
    CHUNK_SIZE,
    FILE_FLAG_DIRTY,
    FILE_HEADER_BLOCK,
    RECORD_ALIGN,
    RECORD_HEADER,
    RECORD_MAGIC,
    STRING_BUCKETS,
    STRING_TABLE_OFFSET,
    TEMPLATE_BUCKETS,
    TEMPLATE_TABLE_OFFSET,
    file_header_bytes,
    filetime,
    seal_chunk,
)

__all__ = ["Damage", "RecordTooLarge", "WriteStats", "evtx_bytes", "write_evtx"]

_BINXML = 0x21
_RECORD_OVERHEAD = RECORD_HEADER.size + 4  # header + trailing size copy
_COUNT = _U32 = struct.Struct("<I").pack
_U64 = struct.Struct("<Q").pack
_PID_TID_ID = struct.Struct("<IIQ").pack


@dataclass(frozen=True)
class WriteStats:
    records: int
    chunks: int
    bytes: int


class RecordTooLarge(ValueError):
    """A single record does not fit in an empty chunk."""


class _Chunk:
    """One chunk being filled: record bytes plus the per-chunk tables."""

    __slots__ = ("body", "tables", "first_number", "last_number", "first_id", "last_id", "last_offset")

    def __init__(self) -> None:
        self.body = bytearray()
        self.tables = ChunkTables()
        self.first_number = self.last_number = self.first_id = self.last_id = 0
        self.last_offset = 0

    @property
    def position(self) -> int:
        return CHUNK_RECORDS_START + len(self.body)

    def empty(self) -> bool:
        return not self.body

    def try_add(self, event: ForgedEvent, number: int, record_id: int) -> bool:
        """Append the record if it fits; on no fit leave the chunk untouched and return False."""
        position = self.position
        system = system_part(event)
        payload_template, payload_values = payload_part(event.payload)
        tables = self.tables
        state = None
        if system.template not in tables.templates or payload_template not in tables.templates:
            state = tables.snapshot()
        binxml_at = position + RECORD_HEADER.size
        instance = template_instance(system.template, binxml_at + 4, tables)
        payload_at = binxml_at + 4 + len(instance) + 4 + 4 * system.count + system.values_size
        payload = b"".join(
            (
                FRAGMENT_HEADER,
                template_instance(payload_template, payload_at + 4, tables),
                payload_values,
                b"\0",
            )
        )
        written = filetime(event.time)
        binxml = b"".join(
            (
                FRAGMENT_HEADER,
                instance,
                _COUNT(system.count),
                system.descriptors,
                descriptor(len(payload), _BINXML),
                system.head,
                _U64(written),
                system.middle,
                _PID_TID_ID(event.process_id, event.thread_id, record_id),
                system.tail,
                payload,
                b"\0",
            )
        )
        size = (len(binxml) + _RECORD_OVERHEAD + RECORD_ALIGN - 1) & -RECORD_ALIGN
        # `>=`, not `>`: libevtx silently drops a record that ends exactly at the end of the chunk
        # (free-space offset 65536), which python-evtx and Rust read; leave at least 8 bytes of slack.
        if position + size >= CHUNK_SIZE:
            if state is not None:
                tables.restore(state)
            return False
        padding = size - _RECORD_OVERHEAD - len(binxml)
        self.body += RECORD_HEADER.pack(RECORD_MAGIC, size, record_id, written)
        self.body += binxml
        self.body += bytes(padding) + _U32(size)
        if not self.last_offset:
            self.first_number, self.first_id = number, record_id
        self.last_number, self.last_id, self.last_offset = number, record_id, position
        return True

    def seal(self) -> bytes:
        chunk = bytearray(CHUNK_SIZE)
        free = self.position
        CHUNK_HEADER.pack_into(
            chunk,
            0,
            CHUNK_MAGIC,
            self.first_number,
            self.last_number,
            self.first_id,
            self.last_id,
            CHUNK_HEADER_SIZE,
            self.last_offset,
            free,
        )
        struct.pack_into(f"<{STRING_BUCKETS}I", chunk, STRING_TABLE_OFFSET, *self.tables.string_heads)
        struct.pack_into(f"<{TEMPLATE_BUCKETS}I", chunk, TEMPLATE_TABLE_OFFSET, *self.tables.template_heads)
        chunk[CHUNK_RECORDS_START:free] = self.body
        seal_chunk(chunk)
        return bytes(chunk)


def _chunks(events: Iterable[ForgedEvent], first_record_id: int) -> Iterable[tuple[bytes, int, int]]:
    """Sealed chunks, each with its record count and last record id."""
    chunk = _Chunk()
    count = 0
    number = first_record_id
    for event in events:
        record_id = number if event.record_id is None else event.record_id
        if not chunk.try_add(event, number, record_id):
            if chunk.empty():
                raise RecordTooLarge(
                    f"record {record_id} ({event.provider} {event.event_id}) exceeds a chunk"
                )
            yield chunk.seal(), count, chunk.last_id
            chunk, count = _Chunk(), 0
            if not chunk.try_add(event, number, record_id):
                raise RecordTooLarge(
                    f"record {record_id} ({event.provider} {event.event_id}) exceeds a chunk"
                )
        count += 1
        number += 1
    if not chunk.empty():
        yield chunk.seal(), count, chunk.last_id


@contextmanager
def _no_cyclic_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector: with millions of live events its full passes halve the speed,
    and writing creates no reference cycles (reference counting frees everything)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _write_chunks(
    events: Iterable[ForgedEvent], first_record_id: int, sink: Callable[[bytes], object]
) -> tuple[int, list[int]]:
    """Feed sealed chunks to `sink`; returns the record count and each chunk's last record id."""
    last_ids: list[int] = []
    records = 0
    with _no_cyclic_gc():
        for sealed, count, last_id in _chunks(events, first_record_id):
            sink(sealed)
            last_ids.append(last_id)
            records += count
    return records, last_ids


def _header(last_ids: list[int], first_record_id: int, dirty: bool, stale_chunk_count: int | None) -> bytes:
    """The file header; a stale one declares only the first k chunks (count, last chunk, next id).

    A negative `stale_chunk_count` counts back from the chunks written (-1: all but the last one, never
    fewer than one), for callers that do not know in advance how many chunks their events fill.
    """
    declared = len(last_ids) if stale_chunk_count is None else stale_chunk_count
    if declared < 0:
        declared = max(min(1, len(last_ids)), len(last_ids) + declared)
    if not 0 <= declared <= len(last_ids):
        raise ValueError(f"stale_chunk_count {declared} outside 0..{len(last_ids)}")
    return file_header_bytes(
        first_chunk=0,
        last_chunk=max(declared - 1, 0),
        next_record_id=last_ids[declared - 1] + 1 if declared else first_record_id,
        chunk_count=declared,
        flags=FILE_FLAG_DIRTY if dirty else 0,
    )


def _assemble(
    events: Iterable[ForgedEvent], first_record_id: int, dirty: bool, stale_chunk_count: int | None
) -> tuple[bytearray, int, int]:
    data = bytearray(FILE_HEADER_BLOCK)
    records, last_ids = _write_chunks(events, first_record_id, data.extend)
    data[:FILE_HEADER_BLOCK] = _header(last_ids, first_record_id, dirty, stale_chunk_count)
    return data, records, len(last_ids)


def evtx_bytes(
    events: Iterable[ForgedEvent],
    *,
    first_record_id: int = 1,
    dirty: bool = True,
    stale_chunk_count: int | None = None,
    damage: Sequence[Damage] = (),
) -> bytes:
    """The .evtx file for `events`, in the order given.

    Record ids run from `first_record_id` in file order unless an event sets its own `record_id`; the
    chunk headers' record numbers always run from `first_record_id`. `dirty` sets header flag 0x1 (a log
    copied off a live host). `stale_chunk_count=k` declares only the first k chunks in the header (chunk
    count k, last chunk number k-1, next record id after chunk k-1) while all are written, as in a copy
    of a live log: python-evtx's `records()` then misses the rest. A negative k counts back from the
    chunks written (-1: the last chunk is not yet declared). `damage` is applied after writing, in
    order (see forge/damage.py for what each kind does to each parser).
    """
    data, _, _ = _assemble(events, first_record_id, dirty, stale_chunk_count)
    for item in damage:
        data = apply_damage(data, item)
    return bytes(data)


def write_evtx(
    path: Path,
    events: Iterable[ForgedEvent],
    *,
    first_record_id: int = 1,
    dirty: bool = True,
    stale_chunk_count: int | None = None,
    damage: Sequence[Damage] = (),
) -> WriteStats:
    """Write `events` to `path` (see evtx_bytes); returns what was written.

    Without damage the file is streamed chunk by chunk (memory stays about one chunk).
    """
    path = Path(path)
    if damage:
        data, records, chunks = _assemble(events, first_record_id, dirty, stale_chunk_count)
        for item in damage:
            data = apply_damage(data, item)
        path.write_bytes(data)
        return WriteStats(records=records, chunks=chunks, bytes=len(data))
    try:
        with path.open("wb") as out:
            out.write(bytes(FILE_HEADER_BLOCK))
            records, last_ids = _write_chunks(events, first_record_id, out.write)
            out.seek(0)
            out.write(_header(last_ids, first_record_id, dirty, stale_chunk_count))
    except BaseException:
        path.unlink(missing_ok=True)  # never leave a half-written file that looks like a log
        raise
    return WriteStats(
        records=records, chunks=len(last_ids), bytes=FILE_HEADER_BLOCK + CHUNK_SIZE * len(last_ids)
    )
