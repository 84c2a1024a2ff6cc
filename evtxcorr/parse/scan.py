"""Read record headers and event keys of a chunk with numpy, without decoding any BinXML.

What a chunk's records are (offset, size, record id, written FILETIME) comes from the record headers;
the event id and the provider come from the substitution values of Windows' System template, whose
indices are fixed (evtx-format.md: 3 EventID u16, 14 Provider/@Name string for manifest providers;
classic providers carry the name as a literal in the template definition). Together they say whether a
record may be one that a rule can match, so a chunk none of whose records may match is never decoded.

Everything here is conservative: a record whose layout is not the one expected (no template
instance, too few values, other value types, a template-less forwarded record) is `unsure` and is
decoded; a chunk the vectorised walk cannot account for exactly returns None and is walked and decoded
the slow way (chunks.walk_records).

scan_batch runs compiled (_scanc.c, the same rules in one pass over the records) when the extension was
built, else with numpy; tests/test_scan_native.py holds the two to identical arrays.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from evtxcorr.parse.chunks import (
    CHUNK_HEADER_SIZE,
    CHUNK_SIZE,
    MIN_RECORD_SIZE,
    RECORD_HEADER_SIZE,
    RecordSlot,
)

if TYPE_CHECKING:
    from evtxcorr.ruleset.wanted import Wanted  # (pySigma: analyze imports it once planning has started)

# The compiled scan (_scanc.c), built at install when a C compiler is at hand; None: the numpy path below
# (a build without a compiler, or EVTXCORR_NO_NATIVE set). Both give the same arrays.
try:
    from evtxcorr.parse import _scanc as NATIVE
except ImportError:  # pragma: no cover - depends on the build
    NATIVE = None
if os.environ.get("EVTXCORR_NO_NATIVE"):
    NATIVE = None

RECORD_MAGIC_U32 = 0x00002A2A
EVENT_ID_INDEX, PROVIDER_INDEX = 3, 14
TYPE_UINT16, TYPE_STRING = 0x06, 0x01
_FRAGMENT = (0x0F, 0x01, 0x01, 0x00, 0x0C)  # fragment header, then a template instance token
_FRAGMENT_U40 = int.from_bytes(bytes(_FRAGMENT), "little")


@dataclass(frozen=True)
class RecordKeys:
    """The records of one chunk as arrays (one element per record, in chunk order)."""

    offsets: np.ndarray  # int64, inside the chunk
    sizes: np.ndarray  # int64
    record_ids: np.ndarray  # uint64 (the record header's id)
    written: np.ndarray  # int64 FILETIME ticks of the record header
    event_ids: np.ndarray  # int64; -1 where not read (unsure)
    unsure: np.ndarray  # bool: layout not the expected one; such a record is always decoded
    provider_at: np.ndarray  # int64 offset of the Provider/@Name string value; -1: literal in template
    provider_len: np.ndarray  # int64 byte length of that value
    template_at: np.ndarray  # int64 chunk offset of the template definition
    candidate: np.ndarray | None = None  # bool: event id among the wanted ones (scan_many's id_table)

    def __len__(self) -> int:
        return len(self.offsets)

    def slots(self) -> list[RecordSlot]:
        """RecordSlot objects, as chunks.walk_records makes them."""
        return [
            RecordSlot(int(self.offsets[i]), int(self.sizes[i]), int(self.record_ids[i]), True)
            for i in range(len(self))
        ]


def _view(buf: bytes, dtype: str) -> np.ndarray:
    """`buf` read as `dtype` at every byte offset (an unaligned strided view, no copy): one gather reads
    a little-endian value at any offsets."""
    width = np.dtype(dtype).itemsize
    return np.ndarray(shape=(max(0, len(buf) - width + 1),), dtype=dtype, buffer=buf, strides=(1,))


@dataclass
class ScanBatch:
    """scan_many's answer for a batch of chunks, as flat arrays over all their records (offsets into the
    joined buffer); `keys(i)` gives one chunk's RecordKeys."""

    count: int  # chunks
    bad: np.ndarray  # bool per chunk: not accounted for exactly (None from keys())
    bounds: np.ndarray  # int64, count + 1: chunk i's records are [bounds[i], bounds[i + 1])
    owner: np.ndarray  # chunk of each record
    offsets: np.ndarray
    sizes: np.ndarray
    record_ids: np.ndarray
    written: np.ndarray
    event_ids: np.ndarray
    unsure: np.ndarray
    provider_at: np.ndarray
    provider_len: np.ndarray
    template_at: np.ndarray
    candidate: np.ndarray | None
    buf: bytes | memoryview  # the chunks joined, 64 KiB each (valid while the batch is being selected)

    def keys(self, index: int) -> RecordKeys | None:
        """The records of chunk `index` (offsets inside the chunk), or None when it is `bad`."""
        if self.bad[index]:
            return None
        lo, hi = int(self.bounds[index]), int(self.bounds[index + 1])
        base = index * CHUNK_SIZE
        provider_at = self.provider_at[lo:hi]
        template_at = self.template_at[lo:hi]
        return RecordKeys(
            offsets=self.offsets[lo:hi] - base,
            sizes=self.sizes[lo:hi],
            record_ids=self.record_ids[lo:hi],
            written=self.written[lo:hi],
            event_ids=self.event_ids[lo:hi],
            unsure=self.unsure[lo:hi],
            provider_at=np.where(provider_at >= 0, provider_at - base, -1),
            provider_len=self.provider_len[lo:hi],
            template_at=np.where(template_at >= 0, template_at - base, -1),
            candidate=None if self.candidate is None else self.candidate[lo:hi],
        )

    def slots(self, index: int, positions: list[int]) -> list[RecordSlot]:
        """RecordSlot objects (offsets inside the chunk) of chunk `index`'s records at `positions`."""
        lo, base = int(self.bounds[index]), index * CHUNK_SIZE
        offsets, sizes, ids = self.offsets, self.sizes, self.record_ids
        return [
            RecordSlot(int(offsets[lo + at]) - base, int(sizes[lo + at]), int(ids[lo + at]), True)
            for at in positions
        ]

    def records_end(self, index: int) -> int:
        """Where chunk `index`'s last record ends, inside the chunk (it has one at least)."""
        last = int(self.bounds[index + 1]) - 1
        return int(self.offsets[last]) - index * CHUNK_SIZE + int(self.sizes[last])

    def rising_by_one(self) -> np.ndarray:
        """Per chunk: does each record's id exceed the one before it by exactly one (worked out once)?"""
        found = getattr(self, "_rising", None)
        if found is None:
            broken = np.zeros(self.count, dtype=bool)
            if len(self.record_ids) > 1:
                ids = self.record_ids
                steps = (ids[1:] - ids[:-1] != 1) | (ids[1:] < ids[:-1])  # uint64 differences wrap round
                broken[self.owner[1:][steps & (self.owner[1:] == self.owner[:-1])]] = True
            found = self._rising = ~broken
        return found

    def per_chunk(self, flags: np.ndarray) -> np.ndarray:
        """How many records of each chunk have `flags` set (int64 per chunk)."""
        return np.bincount(self.owner[flags], minlength=self.count)

    def ends(self) -> tuple[list[int], ...]:
        """Per chunk, as lists of ints: (records, earliest written, latest written, id and written time
        of its first record by id, id and time of its last) - the first and last as a stable sort by
        record id orders them (the first of equal lowest ids, the last of equal highest ids). Chunks
        without records hold zeros."""
        count, bounds = self.count, self.bounds
        records = np.diff(bounds)
        filled = records > 0
        low = np.zeros(count, dtype=np.int64)
        high = np.zeros(count, dtype=np.int64)
        first = np.zeros(count, dtype=np.int64)
        last = np.zeros(count, dtype=np.int64)
        if len(self.written):
            starts = bounds[:-1][filled]  # rising: each chunk's records run to the next one's start
            low[filled] = np.minimum.reduceat(self.written, starts)
            high[filled] = np.maximum.reduceat(self.written, starts)
            first, last = bounds[:-1].copy(), bounds[1:] - 1
            ids = self.record_ids
            # Record ids rise through a chunk: its first and last records are the ends. Where they do not,
            # the stable sort decides.
            falls = self.owner[1:][(ids[1:] <= ids[:-1]) & (self.owner[1:] == self.owner[:-1])]
            for index in sorted(set(falls.tolist())):
                lo, hi = int(bounds[index]), int(bounds[index + 1])
                order = np.argsort(ids[lo:hi], kind="stable")
                first[index], last[index] = lo + int(order[0]), lo + int(order[-1])
            first, last = np.where(filled, first, 0), np.where(filled, last, 0)
        ids = self.record_ids if len(self.record_ids) else np.zeros(1, dtype=np.uint64)
        written = self.written if len(self.written) else np.zeros(1, dtype=np.int64)
        return (
            records.tolist(),
            low.tolist(),
            high.tolist(),
            ids[first].tolist(),
            written[first].tolist(),
            ids[last].tolist(),
            written[last].tolist(),
        )


def _tail_clean(buf: bytes | memoryview, base: int, tail: int, end: int) -> bool:
    """Does the slow walk stop at `tail` (nothing but zeros up to `end`, or no room for a header)?"""
    return tail + RECORD_HEADER_SIZE > end or not bytes(buf[base + tail : base + end]).strip(b"\x00")


def scan_many(chunks: list[tuple[bytes, int]], id_table: np.ndarray | None = None) -> list[RecordKeys | None]:
    """scan() of many chunks at once ((data, end) each, 64 KiB data): numpy's cost per call is paid
    once per batch instead of once per chunk. `id_table` (bool by event id) marks each record's
    `candidate`: a sure record whose event id some rule wants."""
    batch = scan_batch(chunks, id_table)
    return [batch.keys(index) for index in range(batch.count)]


def scan_batch(
    chunks: list[tuple[bytes | memoryview, int]],
    id_table: np.ndarray | None = None,
    scratch: bytearray | None = None,
    joined: bytes | memoryview | None = None,
) -> ScanBatch:
    """scan_many()'s work, left as flat arrays (ScanBatch). With `id_table`, the provider value is read
    only for candidates (the others never need it); without, for every sure record. `scratch`: a buffer
    to join the chunks in, reused from batch to batch (the batch's `buf` is then only valid until the
    next call with it). `joined`: the chunks already side by side in one buffer (all 64 KiB), read
    where they lie."""
    count = len(chunks)
    sizes_ok = [len(data) == CHUNK_SIZE for data, _ in chunks]
    buf: bytes | memoryview
    if joined is not None and len(joined) == count * CHUNK_SIZE and all(sizes_ok):
        buf = joined
    elif scratch is not None and len(scratch) >= count * CHUNK_SIZE:
        # Copied into memory already mapped: a new 8 MiB join per batch costs more in page faults.
        buf = memoryview(scratch)[: count * CHUNK_SIZE]
        for index, ((data, _), ok) in enumerate(zip(chunks, sizes_ok, strict=True)):
            buf[index * CHUNK_SIZE : (index + 1) * CHUNK_SIZE] = data if ok else bytes(CHUNK_SIZE)
    else:
        buf = b"".join(
            data if ok else bytes(CHUNK_SIZE) for (data, _), ok in zip(chunks, sizes_ok, strict=True)
        )
    ends = np.array([end for _, end in chunks], dtype=np.int64)
    if NATIVE is not None and _native_table(id_table):
        return _scan_native(buf, count, ends, ~np.array(sizes_ok, dtype=bool), id_table)
    bases = np.arange(count, dtype=np.int64) * CHUNK_SIZE
    words = np.frombuffer(buf, dtype="<u4").reshape(count, CHUNK_SIZE // 4)
    # Records start 8-aligned: the u32 at every other word from 512 on, as a strided view (no copy).
    last_word = (CHUNK_SIZE - RECORD_HEADER_SIZE) // 4
    found = words[:, CHUNK_HEADER_SIZE // 4 : last_word + 1 : 2] == RECORD_MAGIC_U32
    owner, column = np.divmod(np.flatnonzero(found), found.shape[1])  # flat: faster than 2-d nonzero
    relative = CHUNK_HEADER_SIZE + column.astype(np.int64) * 8
    inside = relative + RECORD_HEADER_SIZE <= ends[owner]
    owner, relative = owner[inside], relative[inside]
    offsets = bases[owner] + relative
    u32 = _view(buf, "<u4")
    sizes = u32[offsets + 4].astype(np.int64)
    bad = np.zeros(count, dtype=bool)
    fits = (sizes >= MIN_RECORD_SIZE) & (relative + sizes <= CHUNK_SIZE)
    bad[owner[~fits]] = True
    copy = u32[np.where(fits, offsets + sizes - 4, offsets)]
    bad[owner[fits & (copy != sizes)]] = True
    nexts = offsets + sizes
    same = owner[:-1] == owner[1:]
    bad[owner[:-1][same & (nexts[:-1] != offsets[1:])]] = True
    has_records = np.zeros(count, dtype=bool)
    has_records[owner] = True
    if len(owner):
        firsts = np.flatnonzero(np.r_[True, ~same])
        bad[owner[firsts][relative[firsts] != CHUNK_HEADER_SIZE]] = True
        lasts = np.flatnonzero(np.r_[~same, True])
        tails = np.zeros(count, dtype=np.int64)
        tails[owner[lasts]] = relative[lasts] + sizes[lasts]
    else:
        tails = np.zeros(count, dtype=np.int64)
    tails[~has_records] = CHUNK_HEADER_SIZE
    bad |= ~np.array(sizes_ok, dtype=bool)
    # The slow walk stops at a record's end only where no header fits before `end` or zeros fill the rest.
    for index in np.flatnonzero(~bad & (tails + RECORD_HEADER_SIZE <= ends)).tolist():
        bad[index] = not _tail_clean(buf, index * CHUNK_SIZE, int(tails[index]), int(ends[index]))
    keep = ~bad[owner]
    owner, offsets, sizes = owner[keep], offsets[keep], sizes[keep]
    ids = np.frombuffer(buf, dtype="<u8")[(offsets + 8) // 8]
    written = np.frombuffer(buf, dtype="<i8")[(offsets + 16) // 8]
    keys = _keys(buf, offsets, sizes, bases[owner], id_table)
    return ScanBatch(
        count=count,
        bad=bad,
        bounds=np.searchsorted(owner, np.arange(count + 1)),
        owner=owner,
        offsets=offsets,
        sizes=sizes,
        record_ids=ids,
        written=written,
        buf=buf,
        **keys,
    )


def _native_table(id_table: np.ndarray | None) -> bool:
    """Can the compiled scan read `id_table` as numpy does (a non-empty bool vector)?"""
    return id_table is None or (id_table.dtype == np.bool_ and id_table.ndim == 1 and len(id_table) > 0)


def _scan_native(
    buf: bytes | memoryview, count: int, ends: np.ndarray, bad: np.ndarray, id_table: np.ndarray | None
) -> ScanBatch:
    """scan_batch's answer from the compiled scan (_scanc.c), array for array the numpy path's. `bad`
    holds the chunks that are not 64 KiB (zeros in `buf`)."""
    bounds = np.zeros(count + 1, dtype=np.int64)
    records = NATIVE.walk(buf, ends, bad, bounds)
    wide = np.empty((9, records), dtype=np.int64)
    flags = np.empty((2, records), dtype=bool)
    table = None if id_table is None else np.ascontiguousarray(id_table)
    NATIVE.keys(buf, bad, bounds, table, wide, flags)
    owner, offsets, sizes, record_ids, written, event_ids, provider_at, provider_len, template_at = wide
    return ScanBatch(
        count=count,
        bad=bad,
        bounds=bounds,
        owner=owner,
        offsets=offsets,
        sizes=sizes,
        record_ids=record_ids.view(np.uint64),
        written=written,
        event_ids=event_ids,
        unsure=flags[0],
        provider_at=provider_at,
        provider_len=provider_len,
        template_at=template_at,
        candidate=None if id_table is None else flags[1],
        buf=buf,
    )


def _keys(
    buf: bytes | memoryview,
    offsets: np.ndarray,
    sizes: np.ndarray,
    base: np.ndarray,
    id_table: np.ndarray | None,
) -> dict[str, np.ndarray | None]:
    """Event id, provider value and template of each record (offsets into the joined buffer `buf`;
    `base`: where each record's chunk starts in it)."""
    u8 = np.frombuffer(buf, dtype=np.uint8)
    u16, u32, u64 = _view(buf, "<u2"), _view(buf, "<u4"), _view(buf, "<u8")
    count = len(offsets)
    top = len(u64) - 1  # the last offset a u64 (and so a u32, u16 or u8) can be read at
    ends = offsets + sizes - 4  # the size copy: values must end before it
    body = offsets + RECORD_HEADER_SIZE
    # The record's first 16 bytes in two reads: fragment header and template instance token (5 bytes),
    # then the definition's chunk offset at byte 10 (u32).
    ok = body + 14 <= ends
    head = u64[np.where(ok, body, 0)]
    ok &= (head & 0xFF_FFFF_FFFF) == _FRAGMENT_U40
    definition = np.where(ok, (u64[np.where(ok, body + 8, 0)] >> np.uint64(16)) & 0xFFFF_FFFF, 0).astype(
        np.int64
    )
    resident = ok & (definition == body - base + 14)
    data_size = np.where(resident, u32[np.minimum(np.where(resident, body + 34, 0), top)].astype(np.int64), 0)
    descriptors = np.where(resident, body + 38 + data_size, body + 14)
    ok &= descriptors + 4 <= ends
    ok &= (definition >= CHUNK_HEADER_SIZE) & (definition + 24 <= CHUNK_SIZE)
    # Value count (u32), then descriptors of 4 bytes (u16 size, u8 type, u8 0): count and values 0-3
    # in three reads, their sizes placing value 3, the event id (a u16).
    at = np.minimum(np.where(ok, descriptors, 0), top)
    counted = u64[at]
    count_values = (counted & 0xFFFF_FFFF).astype(np.int64)
    ok &= (count_values > EVENT_ID_INDEX) & (descriptors + 4 + 4 * count_values <= ends)
    first_value = descriptors + 4 + 4 * count_values
    middle = u64[np.minimum(at + 8, top)]  # sizes of values 1 and 2
    third = u32[np.minimum(at + 16, top)]  # value 3: size and type
    position = first_value + ((counted >> np.uint64(32)) & 0xFFFF).astype(np.int64)
    position += (middle & 0xFFFF).astype(np.int64) + ((middle >> np.uint64(32)) & 0xFFFF).astype(np.int64)
    ok &= (((third >> 16) & 0xFF) == TYPE_UINT16) & ((third & 0xFFFF) == 2) & (position + 2 <= ends)
    event_ids = np.where(ok, u16[np.where(ok, position, 0)].astype(np.int64), -1)
    candidate = None
    need = ok & (count_values > PROVIDER_INDEX)
    if id_table is not None:
        candidate = ok & id_table[np.clip(event_ids, 0, len(id_table) - 1)]
        need &= candidate
    provider_at = np.full(count, -1, dtype=np.int64)
    provider_len = np.zeros(count, dtype=np.int64)
    rows = np.flatnonzero(need)
    if len(rows):
        # Value 14, the provider name: placed by the sizes of values 0-13.
        table = u16[descriptors[rows, None] + 4 + 4 * np.arange(PROVIDER_INDEX + 1)].astype(np.int64)
        where = first_value[rows] + table[:, :PROVIDER_INDEX].sum(axis=1)
        size = table[:, PROVIDER_INDEX]
        kind = u8[descriptors[rows] + 4 + 4 * PROVIDER_INDEX + 2]
        named = (kind == TYPE_STRING) & (where + size <= ends[rows])
        provider_at[rows[named]] = where[named]
        provider_len[rows[named]] = size[named]
    return {
        "event_ids": event_ids,
        "unsure": ~ok,
        "provider_at": provider_at,
        "provider_len": provider_len,
        "template_at": np.where(ok, definition + base, -1),
        "candidate": candidate,
    }


def scan(data: bytes, end: int) -> RecordKeys | None:
    """Record headers and event keys of one chunk (`end`: its free-space offset, or len(data)); None
    when the chunk must be walked and decoded the slow way."""
    return scan_many([(data, end)])[0]


def template_text(data: bytes | memoryview, at: int, end: int | None = None) -> bytes:
    """The bytes of the template definition at offset `at` of `data` (GUID header and element tree), not
    past `end` (default: the end of `data`, one chunk)."""
    end = len(data) if end is None else end
    if at < 0 or at + 24 > end:
        return b""
    size = int.from_bytes(data[at + 20 : at + 24], "little")
    return bytes(data[at : min(end, at + 24 + size)])


def select(batch: ScanBatch, wanted: Wanted) -> np.ndarray:
    """Mask of the batch's records that may be wanted: unsure ones, and those whose (provider, event id)
    may be one of `wanted`'s pairs. A provider literal in the template is looked for in the template's
    bytes, so the test errs towards decoding. (Answers are cached by event id and provider bytes: a log
    repeats a few of them.)"""
    by_event_id, any_event_id = wanted.by_event_id, wanted.any_event_id
    mask = batch.unsure.copy()
    if any_event_id:
        candidates = np.flatnonzero(~batch.unsure)
    elif batch.candidate is not None:
        candidates = np.flatnonzero(batch.candidate)
    else:
        candidates = np.flatnonzero(~batch.unsure & wanted.id_table[np.clip(batch.event_ids, 0, 65535)])
    if not len(candidates):
        return mask
    buf = batch.buf
    named: dict[tuple[int, bytes], bool] = {}
    templates: dict[tuple[int, int], bool] = {}
    event_ids = batch.event_ids[candidates].tolist()
    provider_at = batch.provider_at[candidates].tolist()
    provider_len = batch.provider_len[candidates].tolist()
    template_at = batch.template_at[candidates].tolist()
    for i, event_id, at, size, where in zip(
        candidates.tolist(), event_ids, provider_at, provider_len, template_at, strict=True
    ):
        providers = by_event_id.get(event_id, frozenset())
        if providers is None:
            mask[i] = True
            continue
        if at >= 0:
            raw = bytes(buf[at : at + size])
            found = named.get((event_id, raw))
            if found is None:
                name = raw.decode("utf-16-le", errors="replace").rstrip("\x00").strip().lower()
                found = named[(event_id, raw)] = name in providers | any_event_id
            mask[i] = found
            continue
        found = templates.get((event_id, where))
        if found is None:
            chunk_end = (where // CHUNK_SIZE + 1) * CHUNK_SIZE
            text = template_text(buf, where, chunk_end).lower()
            found = templates[(event_id, where)] = any(
                not p.isascii() or p.encode("utf-16-le") in text for p in providers | any_event_id
            )
        mask[i] = found
    return mask
