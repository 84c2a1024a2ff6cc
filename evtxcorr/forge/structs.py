"""EVTX on-disk layouts as data: file header, chunk header, record header (reference: evtx-format.md).

All integers little-endian; CRC32 is zlib's.
"""

from __future__ import annotations

import struct
import zlib
from datetime import UTC, datetime

FILE_MAGIC = b"ElfFile\0"
CHUNK_MAGIC = b"ElfChnk\0"
RECORD_MAGIC = b"\x2a\x2a\x00\x00"

FILE_HEADER_SIZE = 128  # the part covered by the header size field
FILE_HEADER_BLOCK = 4096  # first chunk starts here
CHUNK_SIZE = 65536
CHUNK_HEADER_SIZE = 128
CHUNK_RECORDS_START = 512  # after header (128) + 64 string offsets (256) + 32 template pointers (128)
STRING_TABLE_OFFSET = 128
STRING_BUCKETS = 64
TEMPLATE_TABLE_OFFSET = 384
TEMPLATE_BUCKETS = 32
VERSION_MINOR, VERSION_MAJOR = 1, 3  # python-evtx verify() wants exactly 3.1

FILE_FLAG_DIRTY = 0x1
FILE_FLAG_FULL = 0x2

# File header bytes 0..43: magic, first chunk no, last chunk no, next record id, header size,
# minor, major, header block size, chunk count. 44..119 zero; flags at 120; CRC32(0..119) at 124.
FILE_HEADER = struct.Struct("<8sQQQIHHHH")
FILE_FLAGS_OFFSET = 120
FILE_CRC_OFFSET = 124

# Chunk header bytes 0..55: magic, first/last record number, first/last record id, header size,
# last record offset, free space offset, data CRC32(chunk[512:free]). Flags at 120,
# header CRC32(chunk[0:120] + chunk[128:512]) at 124.
CHUNK_HEADER = struct.Struct("<8sQQQQIII")
CHUNK_DATA_CRC_OFFSET = 52
CHUNK_FLAGS_OFFSET = 120
CHUNK_CRC_OFFSET = 124

# Record: magic, size (whole record incl. trailing copy), record id, written FILETIME; BinXML follows,
# padding to 8 bytes, then a u32 copy of size.
RECORD_HEADER = struct.Struct("<4sIQQ")
RECORD_ALIGN = 8

_FILETIME_EPOCH = datetime(1601, 1, 1, tzinfo=UTC)


def filetime(moment: datetime) -> int:
    """100 ns ticks since 1601-01-01 UTC, in integer arithmetic (no float microsecond error)."""
    if moment.tzinfo is None:
        raise ValueError(f"naive datetime {moment!r}: forge times must be timezone-aware")
    delta = moment - _FILETIME_EPOCH
    return (delta.days * 86400 + delta.seconds) * 10_000_000 + delta.microseconds * 10


def file_header_bytes(
    *, first_chunk: int, last_chunk: int, next_record_id: int, chunk_count: int, flags: int
) -> bytes:
    """The 4096-byte file header block with its CRC."""
    block = bytearray(FILE_HEADER_BLOCK)
    FILE_HEADER.pack_into(
        block,
        0,
        FILE_MAGIC,
        first_chunk,
        last_chunk,
        next_record_id,
        FILE_HEADER_SIZE,
        VERSION_MINOR,
        VERSION_MAJOR,
        FILE_HEADER_BLOCK,
        chunk_count,
    )
    struct.pack_into("<I", block, FILE_FLAGS_OFFSET, flags)
    struct.pack_into("<I", block, FILE_CRC_OFFSET, zlib.crc32(block[:FILE_FLAGS_OFFSET]))
    return bytes(block)


def seal_chunk(chunk: bytearray) -> None:
    """(Re)compute a chunk's data CRC and header CRC in place; the free-space offset must be set."""
    free = struct.unpack_from("<I", chunk, 48)[0]
    struct.pack_into("<I", chunk, CHUNK_DATA_CRC_OFFSET, zlib.crc32(chunk[CHUNK_RECORDS_START:free]))
    header_crc = zlib.crc32(chunk[:CHUNK_FLAGS_OFFSET])
    header_crc = zlib.crc32(chunk[CHUNK_HEADER_SIZE:CHUNK_RECORDS_START], header_crc)
    struct.pack_into("<I", chunk, CHUNK_CRC_OFFSET, header_crc)


def reseal_file_header(data: bytearray) -> None:
    """Recompute the file header CRC in place."""
    struct.pack_into("<I", data, FILE_CRC_OFFSET, zlib.crc32(data[:FILE_FLAGS_OFFSET]))
