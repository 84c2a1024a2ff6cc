"""plan.ids_overlap: a log whose chunks claim overlapping record ids is decoded whole (read from the
chunk headers only, one read per chunk)."""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

from evtxcorr.parse.chunks import CHUNK_HEADER_FIELDS, CHUNK_SIZE, FILE_HEADER_SIZE
from evtxcorr.parse.plan import ids_overlap

LOG = "2-system-Microsoft-Windows-LiveId%4Operational.evtx"  # 16 chunks, record ids in order


def _ids(data: bytes, chunk: int) -> tuple[int, int]:
    at = FILE_HEADER_SIZE + chunk * CHUNK_SIZE
    return tuple(
        struct.unpack_from(CHUNK_HEADER_FIELDS[name][1], data, at + CHUNK_HEADER_FIELDS[name][0])[0]
        for name in ("first_record_id", "last_record_id")
    )  # type: ignore[return-value]


def test_chunks_claiming_overlapping_ids_are_found(corpus_dir: Path, tmp_path: Path) -> None:
    original = corpus_dir / LOG
    assert not ids_overlap(original)
    data = bytearray(original.read_bytes())
    first, last = _ids(data, 3)
    assert first <= last
    offset, fmt = CHUNK_HEADER_FIELDS["first_record_id"]
    struct.pack_into(fmt, data, FILE_HEADER_SIZE + 9 * CHUNK_SIZE + offset, last)  # chunk 9 reaches back
    changed = tmp_path / "overlap.evtx"
    changed.write_bytes(bytes(data))
    assert ids_overlap(changed)


def test_short_or_missing_files_do_not_overlap(corpus_dir: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.evtx"
    shutil.copyfile(corpus_dir / LOG, cut)
    with cut.open("r+b") as handle:
        handle.truncate(FILE_HEADER_SIZE + 20)  # not even one chunk header
    assert not ids_overlap(cut)
    assert not ids_overlap(tmp_path / "missing.evtx")
