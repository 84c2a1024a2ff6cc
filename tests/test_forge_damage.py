"""Damage applied on request, and what each parser recovers from it (measured, see forge/damage.py)."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from evtx_readback import READERS, read_libevtx, read_python_evtx, read_rust
from forge_samples import mixed_events

from evtxcorr.forge.events import ForgedEvent
from evtxcorr.forge.structs import CHUNK_SIZE, FILE_HEADER_BLOCK
from evtxcorr.forge.writer import Damage, evtx_bytes, write_evtx


def chunk_offsets(data: bytes) -> list[int]:
    return list(range(FILE_HEADER_BLOCK, len(data) - CHUNK_SIZE + 1, CHUNK_SIZE))


def _chunk_ids(data: bytes) -> list[list[int]]:
    out = []
    for start in chunk_offsets(data):
        first, last = struct.unpack_from("<QQ", data, start + 24)
        out.append(list(range(first, last + 1)))
    return out


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> tuple[Path, list[ForgedEvent], list[list[int]]]:
    events = mixed_events(330)
    data = evtx_bytes(events)
    ids = _chunk_ids(data)
    assert len(ids) >= 3
    return tmp_path_factory.mktemp("damage"), events, ids


def _damaged(small, *damage: Damage) -> tuple[Path, list[list[int]]]:
    folder, events, ids = small
    path = folder / f"{damage[0].kind}.evtx"
    write_evtx(path, events, damage=damage)
    return path, ids


def _all_ids(ids: list[list[int]], *without: int) -> list[int]:
    return [i for n, chunk in enumerate(ids) for i in chunk if n not in without]


def test_damage_bad_chunk_crc(small):
    import Evtx.Evtx as PyEvtx

    path, ids = _damaged(small, Damage("bad_chunk_crc", chunk=1))
    for name, reader in READERS.items():  # nobody checks CRCs by default, libevtx only flags it
        readback = reader(path)
        assert sorted(readback.ids) == _all_ids(ids) and not readback.errors, name
    assert read_libevtx(path).corrupted
    checked = read_rust(path, validate_checksums=True)
    assert checked.ids == _all_ids(ids, 1) and len(checked.errors) == 1  # the whole chunk is refused
    with PyEvtx.Evtx(str(path)) as log:
        assert [c.verify() for c in log.get_file_header().chunks()][:3] == [True, False, True]


def test_damage_bad_header_crc(small):
    import Evtx.Evtx as PyEvtx

    path, ids = _damaged(small, Damage("bad_header_crc"))
    with PyEvtx.Evtx(str(path)) as log:
        assert not log.get_file_header().verify()
    for reader in READERS.values():
        assert sorted(reader(path).ids) == _all_ids(ids)


def test_damage_truncate_mid_chunk(small):
    path, ids = _damaged(small, Damage("truncate", chunk=2))
    assert path.stat().st_size == FILE_HEADER_BLOCK + 2 * CHUNK_SIZE + CHUNK_SIZE // 2
    for name, reader in READERS.items():
        readback = reader(path)
        assert sorted(readback.ids) == _all_ids(ids, *range(2, len(ids))), name


def test_damage_garbage_record_loses_just_that_record(small):
    path, ids = _damaged(small, Damage("garbage_record", chunk=1, record=100))  # refers to earlier templates
    lost = ids[1][100]
    for name, reader in READERS.items():
        readback = reader(path)
        assert sorted(readback.ids) == [i for i in _all_ids(ids) if i != lost], name
        assert len(readback.errors) == 1, name
    assert read_rust(path, validate_checksums=True).ids == [i for i in _all_ids(ids) if i != lost]


def test_damage_garbage_record_without_crc_fix_loses_the_chunk_in_checked_rust(small):
    path, ids = _damaged(small, Damage("garbage_record", chunk=1, record=100, fix_crc=False))
    assert read_rust(path, validate_checksums=True).ids == _all_ids(ids, 1)
    assert len(read_rust(path).ids) == len(_all_ids(ids)) - 1


def test_damage_garbage_record_that_defined_templates_takes_others_with_it(small):
    """Junk over a record holding resident template definitions breaks later records referring to them."""
    path, ids = _damaged(small, Damage("garbage_record", chunk=1, record=3))
    others = _all_ids(ids, 1)
    rust, python, libevtx = read_rust(path), read_python_evtx(path), read_libevtx(path)
    assert rust.ids == others  # Rust builds the chunk's string cache first and gives up on the chunk
    for readback in (python, libevtx):
        lost = set(_all_ids(ids)) - set(readback.ids)
        assert ids[1][3] in lost and len(lost) > 1 and lost <= set(ids[1])
        assert set(others) <= set(readback.ids)


def test_damage_bad_chunk_magic(small):
    path, ids = _damaged(small, Damage("bad_chunk_magic", chunk=1))
    for reader in (read_python_evtx, read_rust):
        readback = reader(path)
        assert readback.ids == _all_ids(ids, 1) and len(readback.errors) == 1
    libevtx = read_libevtx(path)  # libevtx scans the chunk anyway and returns its records as recovered
    assert sorted(libevtx.ids) == _all_ids(ids)
    assert sorted(r["record_id"] for r in libevtx.records if r.get("recovered")) == ids[1]


def test_damage_validation():
    with pytest.raises(ValueError):
        Damage("bad_chunk_crc")
    with pytest.raises(ValueError):
        Damage("melt", chunk=1)  # type: ignore[arg-type]
