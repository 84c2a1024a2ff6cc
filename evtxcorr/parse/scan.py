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
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from evtxcorr.parse.chunks import (
    CHUNK_HEADER_SIZE,
    CHUNK_SIZE,
    MIN_RECORD_SIZE,
    RECORD_HEADER_SIZE,
    RecordSlot,
)
from evtxcorr.ruleset.wanted import Wanted

RECORD_MAGIC_U32 = 0x00002A2A
EVENT_ID_INDEX, PROVIDER_INDEX = 3, 14
TYPE_UINT16, TYPE_STRING = 0x06, 0x01
_FRAGMENT = (0x0F, 0x01, 0x01, 0x00, 0x0C)  # fragment header, then a template instance token


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

    def slots(self, positions: np.ndarray | None = None) -> list[RecordSlot]:
        """RecordSlot objects (as chunks.walk_records makes them) for `positions` (default all)."""
        take = range(len(self)) if positions is None else positions.tolist()
        return [
            RecordSlot(int(self.offsets[i]), int(self.sizes[i]), int(self.record_ids[i]), True) for i in take
        ]


def _u32(u8: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Little-endian u32 at each (possibly unaligned) byte offset of `at` (all in bounds)."""
    at = at.astype(np.int64)
    return (
        u8[at].astype(np.int64)
        | (u8[at + 1].astype(np.int64) << 8)
        | (u8[at + 2].astype(np.int64) << 16)
        | (u8[at + 3].astype(np.int64) << 24)
    )


def _u16(u8: np.ndarray, at: np.ndarray) -> np.ndarray:
    at = at.astype(np.int64)
    return u8[at].astype(np.int64) | (u8[at + 1].astype(np.int64) << 8)


def _tail_clean(buf: bytes, base: int, tail: int, end: int) -> bool:
    """Does the slow walk stop at `tail` (nothing but zeros up to `end`, or no room for a header)?"""
    return tail + RECORD_HEADER_SIZE > end or not buf[base + tail : base + end].strip(b"\x00")


def scan_many(chunks: list[tuple[bytes, int]], id_table: np.ndarray | None = None) -> list[RecordKeys | None]:
    """scan() of many chunks at once ((data, end) each, 64 KiB data): numpy's cost per call is paid
    once per batch instead of once per chunk. `id_table` (bool by event id) marks each record's
    `candidate`: a sure record whose event id some rule wants."""
    if not chunks:
        return []
    sizes_ok = [len(data) == CHUNK_SIZE for data, _ in chunks]
    buf = b"".join(data if ok else bytes(CHUNK_SIZE) for (data, _), ok in zip(chunks, sizes_ok, strict=True))
    count = len(chunks)
    bases = np.arange(count, dtype=np.int64) * CHUNK_SIZE
    ends = np.array([end for _, end in chunks], dtype=np.int64)
    words = np.frombuffer(buf, dtype="<u4").reshape(count, CHUNK_SIZE // 4)
    # Records start 8-aligned: the u32 at every other word from 512 on, as a strided view (no copy).
    last_word = (CHUNK_SIZE - RECORD_HEADER_SIZE) // 4
    owner, column = np.nonzero(words[:, CHUNK_HEADER_SIZE // 4 : last_word + 1 : 2] == RECORD_MAGIC_U32)
    relative = CHUNK_HEADER_SIZE + column.astype(np.int64) * 8
    inside = relative + RECORD_HEADER_SIZE <= ends[owner]
    owner, relative = owner[inside], relative[inside]
    offsets = bases[owner] + relative
    u8 = np.frombuffer(buf, dtype=np.uint8)
    sizes = _u32(u8, offsets + 4)
    bad = np.zeros(count, dtype=bool)
    fits = (sizes >= MIN_RECORD_SIZE) & (offsets - bases[owner] + sizes <= CHUNK_SIZE)
    bad[owner[~fits]] = True
    copy = _u32(u8, np.where(fits, offsets + sizes - 4, offsets))
    bad[owner[fits & (copy != sizes)]] = True
    nexts = offsets + sizes
    same = owner[:-1] == owner[1:]
    bad[owner[:-1][same & (nexts[:-1] != offsets[1:])]] = True
    firsts = np.flatnonzero(np.r_[True, ~same]) if len(owner) else np.zeros(0, dtype=np.int64)
    lasts = np.flatnonzero(np.r_[~same, True]) if len(owner) else np.zeros(0, dtype=np.int64)
    bad[owner[firsts][offsets[firsts] - bases[owner[firsts]] != CHUNK_HEADER_SIZE]] = True
    has_records = np.zeros(count, dtype=bool)
    has_records[owner] = True
    for index in np.flatnonzero(~bad).tolist():
        if not sizes_ok[index]:
            bad[index] = True
        elif not has_records[index]:
            bad[index] = not _tail_clean(buf, index * CHUNK_SIZE, CHUNK_HEADER_SIZE, int(ends[index]))
    for position in lasts.tolist():
        index = int(owner[position])
        if not bad[index]:
            tail = int(nexts[position] - bases[index])
            bad[index] = not _tail_clean(buf, index * CHUNK_SIZE, tail, int(ends[index]))
    keep = ~bad[owner]
    owner, offsets, sizes = owner[keep], offsets[keep], sizes[keep]
    ids = np.frombuffer(buf, dtype="<u8")[(offsets + 8) // 8].astype(np.uint64)
    written = np.frombuffer(buf, dtype="<i8")[(offsets + 16) // 8].astype(np.int64)
    keys = _keys(u8, offsets, sizes, owner, bases)
    if id_table is not None:
        keys["candidate"] = ~keys["unsure"] & id_table[np.clip(keys["event_ids"], 0, len(id_table) - 1)]
    bounds = np.searchsorted(owner, np.arange(count + 1))
    out: list[RecordKeys | None] = []
    for index in range(count):
        if bad[index]:
            out.append(None)
            continue
        lo, hi = int(bounds[index]), int(bounds[index + 1])
        base = int(bases[index])
        part = {name: values[lo:hi] for name, values in keys.items()}
        out.append(
            RecordKeys(
                offsets=offsets[lo:hi] - base,
                sizes=sizes[lo:hi],
                record_ids=ids[lo:hi],
                written=written[lo:hi],
                event_ids=part["event_ids"],
                unsure=part["unsure"],
                provider_at=np.where(part["provider_at"] >= 0, part["provider_at"] - base, -1),
                provider_len=part["provider_len"],
                template_at=np.where(part["template_at"] >= 0, part["template_at"] - base, -1),
                candidate=part.get("candidate"),
            )
        )
    return out


def _keys(
    u8: np.ndarray, offsets: np.ndarray, sizes: np.ndarray, owner: np.ndarray, bases: np.ndarray
) -> dict[str, np.ndarray]:
    """Event id, provider value and template of each record (offsets into the joined buffer)."""
    count = len(offsets)
    limit = len(u8)
    ends = offsets + sizes - 4  # the size copy: values must end before it
    body = offsets + RECORD_HEADER_SIZE
    ok = body + 14 <= ends
    for k, byte in enumerate(_FRAGMENT):
        ok &= u8[np.minimum(body + k, limit - 1)] == byte
    base = bases[owner] if count else np.zeros(0, dtype=np.int64)
    definition = np.where(ok, _u32(u8, np.minimum(body + 10, limit - 4)), 0)  # chunk-relative
    resident = ok & (definition == body - base + 14)
    data_size = np.where(resident, _u32(u8, np.minimum(body + 34, limit - 4)), 0)
    descriptors = np.where(resident, body + 38 + data_size, body + 14)
    ok &= descriptors + 4 <= ends
    ok &= (definition >= CHUNK_HEADER_SIZE) & (definition + 24 <= CHUNK_SIZE)
    count_values = np.where(ok, _u32(u8, np.minimum(descriptors, limit - 4)), 0)
    ok &= (count_values > EVENT_ID_INDEX) & (descriptors + 4 + 4 * count_values <= ends)
    position = descriptors + 4 + 4 * count_values  # start of value i, advanced as sizes are added
    event_ids = np.full(count, -1, dtype=np.int64)
    provider_at = np.full(count, -1, dtype=np.int64)
    provider_len = np.zeros(count, dtype=np.int64)
    for index in range(PROVIDER_INDEX + 1):
        has = ok & (count_values > index)
        at = np.where(has, descriptors + 4 + 4 * index, 0)
        size = np.where(has, _u16(u8, at), 0)
        kind = np.where(has, u8[np.minimum(at + 2, limit - 1)], 0)
        if index == EVENT_ID_INDEX:
            ok &= (kind == TYPE_UINT16) & (size == 2) & (position + 2 <= ends)
            event_ids = np.where(ok, _u16(u8, np.where(ok, position, 0)), -1)
        if index == PROVIDER_INDEX:
            named = has & ok & (kind == TYPE_STRING) & (position + size <= ends)
            provider_at = np.where(named, position, -1)
            provider_len = np.where(named, size, 0)
        position = position + size
    return {
        "event_ids": event_ids,
        "unsure": ~ok,
        "provider_at": provider_at,
        "provider_len": provider_len,
        "template_at": np.where(ok, definition + base, -1),
    }


def scan(data: bytes, end: int) -> RecordKeys | None:
    """Record headers and event keys of one chunk (`end`: its free-space offset, or len(data)); None
    when the chunk must be walked and decoded the slow way."""
    return scan_many([(data, end)])[0]


def template_text(data: bytes, at: int) -> bytes:
    """The bytes of the template definition at chunk offset `at` (GUID header and element tree)."""
    if at < 0 or at + 24 > len(data):
        return b""
    size = int.from_bytes(data[at + 20 : at + 24], "little")
    return data[at : min(len(data), at + 24 + size)]


def select(data: bytes, keys: RecordKeys, wanted: Wanted) -> np.ndarray:
    """Mask of the records that may be wanted: unsure ones, and those whose (provider, event id) may be
    one of `wanted`'s pairs. A provider literal in the template is looked for in the template's bytes,
    so the test errs towards decoding."""
    by_event_id, any_event_id = wanted.by_event_id, wanted.any_event_id
    mask = keys.unsure.copy()
    if any_event_id:
        candidates = np.flatnonzero(~keys.unsure)
    elif keys.candidate is not None:
        candidates = np.flatnonzero(keys.candidate)
    else:
        candidates = np.flatnonzero(~keys.unsure & wanted.id_table[np.clip(keys.event_ids, 0, 65535)])
    templates: dict[int, bytes] = {}
    for i in candidates.tolist():
        providers = by_event_id.get(int(keys.event_ids[i]), frozenset())
        if providers is None:
            mask[i] = True
            continue
        providers = providers | any_event_id
        at = int(keys.provider_at[i])
        if at >= 0:
            name = data[at : at + int(keys.provider_len[i])].decode("utf-16-le", errors="replace")
            mask[i] = name.rstrip("\x00").strip().lower() in providers
            continue
        where = int(keys.template_at[i])
        if where not in templates:
            templates[where] = template_text(data, where).lower()
        text = templates[where]
        mask[i] = any(not p.isascii() or p.encode("utf-16-le") in text for p in providers)
    return mask
