"""Damage applied to a written .evtx on request, to exercise the parsers' recovery paths.

Kinds (chunk numbers and record indexes are 0-based). What the parsers do, as measured by
tests/test_forge_writer.py (python-evtx 0.8.1 over all chunks, evtx 0.14, libevtx-python):
* `bad_chunk_crc`: flip the stored data CRC of chunk N (the bytes stay intact). By default all three read
  every record; Rust with `validate_checksums=True` refuses the whole chunk (one error); python-evtx's
  `ChunkHeader.verify()` is False.
* `bad_header_crc`: flip the stored file header CRC. python-evtx `FileHeader.verify()` is False; every
  parser still reads every record.
* `truncate`: cut the file at `offset` (absolute) or, with `chunk`, at that chunk's start + `offset`
  (default half a chunk). All three silently drop the partial chunk and everything after it.
* `garbage_record`: overwrite the BinXML of record `record` in chunk N with junk, keeping the record
  magic, size, id, time and size copy; the chunk CRCs are recomputed unless `fix_crc=False`. A record that
  only refers to earlier templates is lost alone (one error in each parser). A record that carries
  resident template definitions (the first records of a chunk) takes the later records using those
  templates with it in python-evtx and libevtx, and Rust gives up the whole chunk (its string cache
  cannot be built).
* `bad_chunk_magic`: overwrite chunk N's `ElfChnk\\0` signature. python-evtx (chunk iteration) and Rust
  skip the chunk with one error; libevtx still returns its records, as recovered records.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Literal

from evtxcorr.forge.structs import (
    CHUNK_DATA_CRC_OFFSET,
    CHUNK_RECORDS_START,
    CHUNK_SIZE,
    FILE_CRC_OFFSET,
    FILE_HEADER_BLOCK,
    RECORD_HEADER,
    seal_chunk,
)

DamageKind = Literal["bad_chunk_crc", "bad_header_crc", "truncate", "garbage_record", "bad_chunk_magic"]
KINDS: tuple[str, ...] = DamageKind.__args__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Damage:
    kind: DamageKind
    chunk: int | None = None
    record: int | None = None
    offset: int | None = None
    fix_crc: bool = True

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown damage kind {self.kind!r}; known: {', '.join(KINDS)}")
        needs_chunk = self.kind in ("bad_chunk_crc", "garbage_record", "bad_chunk_magic")
        if needs_chunk and self.chunk is None:
            raise ValueError(f"damage {self.kind} needs chunk=")
        if self.kind == "garbage_record" and self.record is None:
            raise ValueError("damage garbage_record needs record=")
        if self.kind == "truncate" and self.chunk is None and self.offset is None:
            raise ValueError("damage truncate needs offset= or chunk=")


def _chunk_start(data: bytearray, chunk: int) -> int:
    start = FILE_HEADER_BLOCK + chunk * CHUNK_SIZE
    if start + CHUNK_SIZE > len(data):
        raise ValueError(f"chunk {chunk} not in file ({len(data)} bytes)")
    return start


def _junk(length: int, seed: int) -> bytes:
    """Deterministic junk that is not valid BinXML (an LCG byte stream)."""
    out = bytearray(length)
    state = seed & 0xFFFFFFFF or 1
    for i in range(length):
        state = (state * 1103515245 + 12345) & 0x7FFFFFFF
        out[i] = (state >> 16) & 0xFF
    if out:
        out[0] = 0xFF  # never a fragment header or template instance token
    return bytes(out)


def _record_offset(chunk: bytes | bytearray, index: int) -> int:
    offset = CHUNK_RECORDS_START
    free = struct.unpack_from("<I", chunk, 48)[0]
    for _ in range(index):
        offset += struct.unpack_from("<I", chunk, offset + 4)[0]
        if offset >= free:
            raise ValueError(f"chunk has no record {index}")
    return offset


def apply_damage(data: bytearray, damage: Damage) -> bytearray:
    """Return `data` with `damage` applied (may be the same object, modified in place)."""
    if damage.kind == "bad_header_crc":
        struct.pack_into(
            "<I", data, FILE_CRC_OFFSET, struct.unpack_from("<I", data, FILE_CRC_OFFSET)[0] ^ 0xFFFFFFFF
        )
        return data
    if damage.kind == "truncate":
        cut = (
            damage.offset
            if damage.chunk is None
            else (
                _chunk_start(data, damage.chunk)
                + (CHUNK_SIZE // 2 if damage.offset is None else damage.offset)
            )
        )
        return data[:cut]
    assert damage.chunk is not None
    start = _chunk_start(data, damage.chunk)
    if damage.kind == "bad_chunk_magic":
        data[start : start + 8] = b"ElfXXXX\0"
    elif damage.kind == "bad_chunk_crc":
        at = start + CHUNK_DATA_CRC_OFFSET
        struct.pack_into("<I", data, at, struct.unpack_from("<I", data, at)[0] ^ 0xFFFFFFFF)
    elif damage.kind == "garbage_record":
        chunk = data[start : start + CHUNK_SIZE]
        offset = _record_offset(chunk, damage.record or 0)
        size = struct.unpack_from("<I", chunk, offset + 4)[0]
        body_start, body_end = offset + RECORD_HEADER.size, offset + size - 4
        chunk[body_start:body_end] = _junk(
            body_end - body_start, seed=damage.chunk * 65536 + (damage.record or 0)
        )
        if damage.fix_crc:
            seal_chunk(chunk)
        data[start : start + CHUNK_SIZE] = chunk
    return data
