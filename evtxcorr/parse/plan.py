"""Which .evtx files selective parsing must still decode whole, so that the answers stay exact.

Selective parsing counts most records from their headers and never decodes them, so they cannot be
compared with each other. Duplicates (table.DEDUP_KEY) share a full host name and a channel, so only
logs that may hold the same records need every record decoded:
* two or more files whose first records have the same host and channel (a log collected twice, a
  backup copy beside the live one): all of them;
* a file whose chunks claim overlapping record id ranges (the same records twice in one file).
"""

from __future__ import annotations

import os
import struct
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

from evtxcorr.model import Source
from evtxcorr.parse import rust
from evtxcorr.parse.chunks import CHUNK_HEADER_FIELDS, CHUNK_MAGIC, CHUNK_SIZE, FILE_HEADER_SIZE, iter_chunks

FIRST_CHUNKS_TRIED = 4  # chunks read to find a file's first parseable record
# (offset, struct format) of a chunk header's first and last record ids: within its first 40 bytes
_ID_RANGE = (CHUNK_HEADER_FIELDS["first_record_id"], CHUNK_HEADER_FIELDS["last_record_id"])


def identity(path: Path) -> tuple[str, str] | None:
    """(lower-case full host name, channel) of the file's first parseable record, or None."""
    try:
        for number, chunk in enumerate(iter_chunks(path)):
            if number >= FIRST_CHUNKS_TRIED:
                return None
            if not chunk.readable:
                continue
            for item in rust.parse_chunk(chunk.data):
                if isinstance(item, Exception) or isinstance(item[1], Exception) or item[1] is None:
                    continue
                record = item[1]
                return str(record["host"]).strip().lower(), str(record["channel"])
    except Exception:  # noqa: BLE001 - unreadable here is decided (and reported) by parse()
        return None
    return None


def ids_overlap(path: Path) -> bool:
    """Do two chunks of the file claim overlapping record id ranges (chunk headers only)?"""
    ranges: list[tuple[int, ...]] = []
    try:
        with path.open("rb", buffering=0) as fh:  # unbuffered: a buffered read would copy 8 KiB each
            offset = FILE_HEADER_SIZE
            while len(head := _read_at(fh, offset, 40)) == 40:
                if head[:8] == CHUNK_MAGIC:
                    ranges.append(tuple(struct.unpack_from(fmt, head, at)[0] for at, fmt in _ID_RANGE))
                offset += CHUNK_SIZE
    except OSError:
        return False
    ranges.sort()
    return any(b[0] <= a[1] for a, b in zip(ranges, ranges[1:], strict=False))


def _read_at(fh: BinaryIO, offset: int, size: int) -> bytes:
    """`size` bytes at `offset`: one system call where the OS has pread."""
    if hasattr(os, "pread"):
        return os.pread(fh.fileno(), size, offset)
    fh.seek(offset)
    return fh.read(size)


def decode_whole(sources: Iterable[Source]) -> set[int]:
    """Entry ids of the .evtx sources to decode whole (see the module docstring)."""
    by_identity: dict[tuple[str, str], list[int]] = defaultdict(list)
    whole: set[int] = set()
    for source in sources:
        if source.kind != "evtx":
            continue
        if ids_overlap(source.path):
            whole.add(source.entry_id)
        found = identity(source.path)
        if found is None:  # whose log it is cannot be told cheaply: decode it all
            whole.add(source.entry_id)
        else:
            by_identity[found].append(source.entry_id)
    for entry_ids in by_identity.values():
        if len(entry_ids) > 1:
            whole.update(entry_ids)
    return whole
