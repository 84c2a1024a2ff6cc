"""Split an EVTX file into its header, chunks and record slots, without any parser library.

Both backends parse one chunk at a time from what this module finds, so every record has a known
chunk and file offset, a damaged chunk costs only that chunk, and chunks past the header's stale
chunk count (dirty files) are read too. Layouts follow evtx-format.md (libyal documentation).
"""

from __future__ import annotations

import mmap
import os
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

try:  # zlib-ng's CRC-32 (the same checksum, SIMD: about 15x zlib's); zlib where its wheel is missing
    from zlib_ng.zlib_ng import crc32
except ImportError:  # pragma: no cover - depends on the platform's wheels
    from zlib import crc32

FILE_MAGIC = b"ElfFile\x00"
CHUNK_MAGIC = b"ElfChnk\x00"
RECORD_MAGIC = b"\x2a\x2a\x00\x00"
FILE_HEADER_SIZE = 4096
CHUNK_SIZE = 65536
BLOCK_CHUNKS = 128  # chunks read from the file at once (8 MiB): the scan's batch
CHUNK_HEADER_SIZE = 512  # 128-byte header + string and template offset tables
RECORD_HEADER_SIZE = 24  # magic, size, record id, written FILETIME
MIN_RECORD_SIZE = RECORD_HEADER_SIZE + 4  # header + trailing size copy

# name -> (offset, struct format): the fields this module reads, as data.
FILE_HEADER_FIELDS: dict[str, tuple[int, str]] = {
    "first_chunk": (8, "<Q"),
    "last_chunk": (16, "<Q"),
    "next_record_id": (24, "<Q"),
    "header_size": (32, "<I"),
    "minor_version": (36, "<H"),
    "major_version": (38, "<H"),
    "block_size": (40, "<H"),
    "chunk_count": (42, "<H"),
    "flags": (120, "<I"),
    "checksum": (124, "<I"),
}
CHUNK_HEADER_FIELDS: dict[str, tuple[int, str]] = {
    "first_record_number": (8, "<Q"),
    "last_record_number": (16, "<Q"),
    "first_record_id": (24, "<Q"),
    "last_record_id": (32, "<Q"),
    "header_size": (40, "<I"),
    "last_record_offset": (44, "<I"),
    "free_space_offset": (48, "<I"),
    "data_checksum": (52, "<I"),
    "flags": (120, "<I"),
    "header_checksum": (124, "<I"),
}
FILE_FLAG_DIRTY = 0x1
FILE_FLAG_FULL = 0x2


class BoundExceeded(Exception):
    """A backend went past a work bound (CPU time per chunk, nodes per record): what it was reading
    is given up and counted as failed, never waited for."""


_COMPILED: dict[int, tuple[dict[str, tuple[int, str]], struct.Struct, tuple[str, ...]]] = {}


def _compiled(layout: dict[str, tuple[int, str]]) -> tuple[struct.Struct, tuple[str, ...]] | None:
    """One struct for all of `layout`'s little-endian fields (by offset, padding between them), or None
    when they overlap."""
    known = _COMPILED.get(id(layout))
    if known is not None and known[0] is layout:
        return known[1], known[2]
    fields = sorted(layout.items(), key=lambda item: item[1][0])
    parts, at = ["<"], 0
    for _name, (offset, fmt) in fields:
        if offset < at or not fmt.startswith("<"):
            return None
        parts.append(f"{offset - at}x{fmt[1:]}")
        at = offset + struct.calcsize(fmt)
    compiled = struct.Struct("".join(parts))
    names = tuple(name for name, _ in fields)
    _COMPILED[id(layout)] = (layout, compiled, names)
    return compiled, names


def read_fields(buf: bytes, layout: dict[str, tuple[int, str]]) -> dict[str, int]:
    """Unpack the fields of `layout` from `buf` (which must be long enough)."""
    compiled = _compiled(layout)
    if compiled is None:
        return {name: struct.unpack_from(fmt, buf, off)[0] for name, (off, fmt) in layout.items()}
    values = dict(zip(compiled[1], compiled[0].unpack_from(buf), strict=True))
    return values if compiled[1] == tuple(layout) else {name: values[name] for name in layout}


@dataclass(frozen=True)
class FileHeader:
    fields: dict[str, int]
    magic_ok: bool
    crc_ok: bool

    @property
    def dirty(self) -> bool:
        return bool(self.fields["flags"] & FILE_FLAG_DIRTY)

    @property
    def chunk_count(self) -> int:
        return self.fields["chunk_count"]


@dataclass(frozen=True)
class RecordSlot:
    """One record header found by walking a chunk: where it is and what id it claims."""

    offset: int  # offset inside the chunk
    size: int
    record_id: int
    valid: bool  # magic, size and trailing size copy all consistent


@dataclass
class Chunk:
    """One 64 KiB chunk slot of the file (index counted from the first chunk after the header)."""

    index: int
    file_offset: int
    raw: bytes | memoryview  # its bytes; a view into the block iter_chunks read (see `data`, `block_at`)
    status: str  # 'ok' | 'repaired' | 'bad-magic' | 'truncated' | 'trailing'
    header: dict[str, int] = field(default_factory=dict)
    header_crc_ok: bool = True
    data_crc_ok: bool = True
    _slots: list[RecordSlot] | None = field(default=None, repr=False)
    # Set when only some records are decoded: `slots` is then the chain the decoder is given (the record
    # at 512, then the wanted ones) and this is where the chunk's last record ends (stitched()).
    records_end: int | None = None
    # The record at 512 is in `slots` only because a parser starts there, not wanted: stitched() gives it
    # an empty body (one end-of-stream token), so it is neither expanded nor checked (prescan.unfit).
    lead_blank: bool = False
    unfit: dict | None = None  # prescan.unfit(): records the Rust backend must not be trusted with
    block_at: int = -1  # where `raw` starts in the bytes it views (iter_chunks' block), -1: not a view
    _bytes: bytes | None = field(default=None, repr=False)

    @property
    def data(self) -> bytes:
        """The chunk's bytes, copied out of the block on first use: most chunks are only scanned."""
        if self._bytes is None:
            self._bytes = self.raw if isinstance(self.raw, bytes) else bytes(self.raw)
        return self._bytes

    @property
    def readable(self) -> bool:
        return self.status in ("ok", "repaired")

    @property
    def end(self) -> int:
        """Where the walk of its records stops: the free-space offset when plausible, else the end."""
        free = self.header.get("free_space_offset", 0)
        return free if CHUNK_HEADER_SIZE <= free <= len(self.raw) else len(self.raw)

    @property
    def slots(self) -> list[RecordSlot]:
        """Every record header of the chunk (walked on first use: most chunks are only scanned)."""
        if self._slots is None:
            self._slots = walk_records(self.data, self.end) if self.readable else []
        return self._slots

    @slots.setter
    def slots(self, value: list[RecordSlot]) -> None:
        self._slots = value


def parse_file_header(buf: bytes) -> FileHeader | None:
    """The file header, or None when `buf` is shorter than one header."""
    if len(buf) < 128:
        return None
    fields = read_fields(buf, FILE_HEADER_FIELDS)
    crc_ok = zlib.crc32(buf[:120]) == fields["checksum"]
    return FileHeader(fields=fields, magic_ok=buf[:8] == FILE_MAGIC, crc_ok=crc_ok)


def _slot_at(data: bytes, off: int) -> RecordSlot | None:
    """The record header at `off`, or None when there is no record signature there."""
    if off + RECORD_HEADER_SIZE > len(data) or data[off : off + 4] != RECORD_MAGIC:
        return None
    size, record_id = struct.unpack_from("<IQ", data, off + 4)
    valid = MIN_RECORD_SIZE <= size <= len(data) - off
    if valid:
        valid = struct.unpack_from("<I", data, off + size - 4)[0] == size
    return RecordSlot(offset=off, size=size, record_id=record_id, valid=valid)


def _resync(data: bytes, start: int, end: int) -> int | None:
    """Next 8-aligned offset in [start, end) holding a valid record header (after a damaged one)."""
    off = start + (-start % 8)
    while True:
        off = data.find(RECORD_MAGIC, off, end)
        if off < 0:
            return None
        if off % 8 == 0:
            slot = _slot_at(data, off)
            if slot is not None and slot.valid:
                return off
        off += 1


def walk_records(data: bytes, free_space_offset: int | None = None) -> list[RecordSlot]:
    """Every record header in one chunk, in order.

    Walks from offset 512 up to the free-space offset (or the chunk end when that offset is not
    plausible). A damaged header (zero size, bad size copy) is kept as an invalid slot and the walk
    resumes at the next valid record signature, so records behind it are still counted.
    """
    end = len(data)
    if free_space_offset is not None and CHUNK_HEADER_SIZE <= free_space_offset <= len(data):
        end = free_space_offset
    slots: list[RecordSlot] = []
    off = CHUNK_HEADER_SIZE
    while off + RECORD_HEADER_SIZE <= end:
        slot = _slot_at(data, off)
        if slot is None:
            if _is_zero(data[off:end]):
                break
            # Bytes where a record header should be, before the free-space offset: one damaged slot.
            slot = RecordSlot(offset=off, size=0, record_id=0, valid=False)
        slots.append(slot)
        if slot.valid:
            off += slot.size
            continue
        nxt = _resync(data, off + 8, end)
        if nxt is None:
            break
        off = nxt
    return slots


def _read_chunk(index: int, file_offset: int, data: bytes | memoryview) -> Chunk:
    if len(data) < CHUNK_SIZE:
        return Chunk(index, file_offset, data, "truncated")
    status = "ok"
    if data[:8] != CHUNK_MAGIC:
        # Only the signature damaged? A chunk header of the right size and record headers where they
        # belong say so: read it with the signature restored (libevtx recovers such chunks too).
        repaired = CHUNK_MAGIC + data[8:]
        header = read_fields(repaired, CHUNK_HEADER_FIELDS)
        free = header["free_space_offset"]
        slots = walk_records(repaired, free if CHUNK_HEADER_SIZE <= free <= CHUNK_SIZE else None)
        if header["header_size"] != 128 or not any(slot.valid for slot in slots):
            return Chunk(index, file_offset, data, "bad-magic")
        data, status = repaired, "repaired"
    header = read_fields(data, CHUNK_HEADER_FIELDS)
    view = memoryview(data)  # slices of it are not copies
    header_crc = crc32(view[128:512], crc32(view[:120]))
    free = header["free_space_offset"]
    data_crc_ok = True
    if CHUNK_HEADER_SIZE <= free <= CHUNK_SIZE:
        data_crc_ok = crc32(view[512:free]) == header["data_checksum"]
    return Chunk(
        index,
        file_offset,
        data,
        status,
        header=header,
        header_crc_ok=header_crc == header["header_checksum"],
        data_crc_ok=data_crc_ok,
    )


def _is_zero(data: bytes) -> bool:
    return not data.strip(b"\x00")


# Set in a guarded child (guard.py): blocks are mapped from the file instead of read into memory (no
# copy). A file that shrinks while mapped raises SIGBUS, which there costs a retry of the file; in any
# other process it would kill the process, so there blocks are read.
MAP_FILES = False


def _blocks(fh: BinaryIO) -> Iterator[bytes | mmap.mmap]:
    """The file from FILE_HEADER_SIZE on, BLOCK_CHUNKS chunks at a time (the last block may be short):
    mapped when MAP_FILES (as far as the file reached when opened; what it grew by since is read)."""
    size = BLOCK_CHUNKS * CHUNK_SIZE
    position = FILE_HEADER_SIZE
    if MAP_FILES:
        try:
            end = os.fstat(fh.fileno()).st_size
        except (OSError, ValueError):
            end = position
        end -= (end - position) % CHUNK_SIZE if end > position else 0  # whole chunks: a short tail is read
        while position < end:
            length = min(size, end - position)
            try:
                block: bytes | mmap.mmap = mmap.mmap(
                    fh.fileno(), length, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ, offset=position
                )
            except (OSError, ValueError):  # not mappable (a pipe, a special file system): read it
                break
            yield block
            position += length
    fh.seek(position)
    while block := fh.read(size):
        yield block


def iter_chunks(path: Path) -> Iterator[Chunk]:
    """Every chunk slot after the file header, streaming a block of chunks at a time (_blocks).

    Slots past the header's chunk count are read too (dirty files). A slot without the chunk magic
    is yielded as 'bad-magic' when a real chunk follows it; after the last real chunk such slots are
    unused or overwritten space: yielded as 'trailing' when they hold data, dropped when all zero. A
    short tail holding data is yielded as 'truncated'.
    """
    with path.open("rb") as fh:
        index = 0
        pending: list[Chunk] = []
        # BLOCK_CHUNKS chunks at a time; each chunk views its part of the block (no copy until its bytes
        # are needed), and the scan reads a block's chunks where they lie.
        for block in _blocks(fh):
            view = memoryview(block)
            for at in range(0, len(view), CHUNK_SIZE):
                chunk = _read_chunk(index, FILE_HEADER_SIZE + index * CHUNK_SIZE, view[at : at + CHUNK_SIZE])
                if isinstance(chunk.raw, memoryview):  # (a repaired chunk is a copy)
                    chunk.block_at = at
                index += 1
                if chunk.readable:
                    yield from pending  # bad-magic slots between real chunks: failed chunks
                    pending.clear()
                    yield chunk
                else:
                    pending.append(chunk)
        for chunk in pending:  # after the last real chunk
            if _is_zero(chunk.data):
                continue
            if chunk.status == "bad-magic":
                chunk.status = "trailing"
            yield chunk


def stitched(chunk: Chunk) -> bytes:
    """The chunk's bytes with each record of `chunk.slots` sized to reach the next one (the last, to
    `records_end`): a parser walking record sizes then reads only those records. Everything else
    (templates, names, other records' bytes) stays where it was, so chunk offsets still resolve."""
    if chunk.records_end is None:
        return chunk.data
    offsets = [slot.offset for slot in chunk.slots]
    ends = [*offsets[1:], chunk.records_end]
    # The first byte of the lead record's BinXML becomes an end-of-stream token (its header, which other
    # records never point into, is left as it is; the bytes after it may hold templates others use).
    blank = offsets[0] + RECORD_HEADER_SIZE if chunk.lead_blank else -1
    if (
        any(b - a < RECORD_HEADER_SIZE + 1 for a, b in zip(offsets, offsets[1:], strict=False))
        or offsets[-1] + 8 > len(chunk.data)
        or blank >= len(chunk.data)
    ):
        data = bytearray(chunk.data)  # slots out of order: patched one by one
        for here, there in zip(offsets, ends, strict=True):
            struct.pack_into("<I", data, here + 4, there - here)
        if 0 <= blank < len(data):
            data[blank] = 0
        return bytes(data)
    view = memoryview(chunk.data)  # one copy: the new sizes joined with the bytes between them
    parts: list[bytes | memoryview] = []
    done = 0
    for here, there in zip(offsets, ends, strict=True):
        parts += [view[done : here + 4], _SIZE.pack(there - here)]
        done = here + 8
        if here + RECORD_HEADER_SIZE == blank:
            parts += [view[done:blank], b"\x00"]
            done = blank + 1
    parts.append(view[done:])
    return b"".join(parts)


_SIZE = struct.Struct("<I")


def _mini_header() -> bytes:
    header = bytearray(FILE_HEADER_SIZE)
    header[0:8] = FILE_MAGIC
    struct.pack_into("<QQQIHHHH", header, 8, 0, 0, 0, 128, 1, 3, FILE_HEADER_SIZE, 1)
    struct.pack_into("<I", header, 124, zlib.crc32(bytes(header[:120])))
    return bytes(header)


_MINI_HEADER = _mini_header()


def mini_file(chunk_data: bytes) -> bytes:
    """A valid one-chunk EVTX file around `chunk_data`: what a whole-file parser accepts."""
    return _MINI_HEADER + chunk_data
