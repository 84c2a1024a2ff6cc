"""The compiled scan (evtxcorr/parse/_scanc.c) gives array for array what scan.py's numpy path gives:
on every chunk of the shared corpus and the fixtures, on randomly damaged chunks and on batches that mix
good and bad chunks, with and without an event id table."""

from __future__ import annotations

import os
import struct
import zipfile
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evtxcorr.parse import scan
from evtxcorr.parse.chunks import CHUNK_SIZE, iter_chunks, walk_records
from evtxcorr.ruleset import load_ruleset, with_builtin
from evtxcorr.ruleset.wanted import wanted_pairs

FIELDS = ["bad", "bounds", "owner", "offsets", "sizes", "record_ids", "written", "event_ids", "unsure"]
FIELDS += ["provider_at", "provider_len", "template_at", "candidate"]
BUNDLES = Path(__file__).parent / "fixtures" / "bundles"
FIXTURE_LOGS = sorted((Path(__file__).parent / "fixtures").rglob("*.evtx"))
BATCH = 128  # chunks per batch, as parse._scanned reads them
MAGIC = b"\x2a\x2a\x00\x00"

native = pytest.mark.skipif(
    scan.NATIVE is None, reason="the compiled scan is not built (or EVTXCORR_NO_NATIVE)"
)


@cache
def rules_table() -> np.ndarray:
    wanted = wanted_pairs(load_ruleset(with_builtin(())))
    assert wanted is not None
    return wanted.id_table


def both(chunks: list[tuple[bytes, int]], table: np.ndarray | None, scratch: bool = False) -> scan.ScanBatch:
    """scan_batch compiled and with numpy; asserts every array of the two answers is identical."""
    answers = []
    for engine in (scan.NATIVE, None):
        saved, scan.NATIVE = scan.NATIVE, engine
        try:
            room = bytearray(len(chunks) * CHUNK_SIZE) if scratch else None
            answers.append(scan.scan_batch(chunks, table, room))
        finally:
            scan.NATIVE = saved
    compiled, reference = answers
    for name in FIELDS:
        ours, theirs = getattr(compiled, name), getattr(reference, name)
        if theirs is None:
            assert ours is None, name
            continue
        assert ours.dtype == theirs.dtype, (name, ours.dtype, theirs.dtype)
        assert ours.shape == theirs.shape, (name, ours.shape, theirs.shape)
        assert np.array_equal(ours, theirs), (name, np.flatnonzero(ours != theirs)[:5])
    assert compiled.count == reference.count
    assert bytes(compiled.buf) == bytes(reference.buf)
    assert compiled.ends() == reference.ends()
    return compiled


def tables() -> list[np.ndarray | None]:
    """No table, the rules' table, and a short one (event ids past its end read its last entry)."""
    short = np.zeros(4700, dtype=bool)
    short[[0, 1, 7, 41, 1074, 4699]] = True
    return [None, rules_table(), short]


def _logs_in_bundles() -> list[bytes]:
    logs = []
    for bundle in sorted(BUNDLES.glob("*.zip"))[:4]:
        with zipfile.ZipFile(bundle) as archive:
            logs += [archive.read(n) for n in archive.namelist() if n.lower().endswith(".evtx")]
    return logs


def _chunks_of(data: bytes, tmp: Path) -> list[tuple[bytes, int]]:
    tmp.write_bytes(data)
    return [(c.data, c.end) for c in iter_chunks(tmp)]


# --- (a) the build -----------------------------------------------------------------------------------


@pytest.mark.skipif(
    bool(os.environ.get("EVTXCORR_NO_NATIVE")), reason="EVTXCORR_NO_NATIVE: numpy path asked for"
)
def test_the_compiled_scan_is_built_and_used() -> None:
    """`pip install -e .` (scripts/test, CI) builds _scanc; a broken build would leave only numpy."""
    from evtxcorr.parse import _scanc

    assert scan.NATIVE is _scanc
    assert Path(_scanc.__file__).suffix in (".so", ".pyd")


# --- (b) real logs -----------------------------------------------------------------------------------


@native
def test_every_chunk_of_the_corpus_and_fixtures_scans_the_same(corpus_dir: Path, tmp_path: Path) -> None:
    logs = sorted(corpus_dir.rglob("*.evtx")) + FIXTURE_LOGS
    assert len(logs) >= 20
    records = sure = named = bad = 0
    for path in logs:
        chunks = [(c.data, c.end) for c in iter_chunks(path)]  # every slot, damaged ones too
        for start in range(0, len(chunks), BATCH):
            batch = chunks[start : start + BATCH]
            for table in tables():
                found = both(batch, table)
            both(batch, rules_table(), scratch=True)
            records += len(found.offsets)
            sure += int((~found.unsure).sum())
            named += int((found.provider_at >= 0).sum())
            bad += int(found.bad.sum())
    # the comparison covered real records of every kind: sure, unsure, named providers, bad chunks
    assert records > 5000 and 0 < sure < records and named > 100 and bad > 0


@native
def test_the_fixture_bundles_scan_the_same(tmp_path: Path) -> None:
    checked = 0
    for number, data in enumerate(_logs_in_bundles()):
        chunks = _chunks_of(data, tmp_path / f"{number}.evtx")
        for table in tables():
            checked += len(both(chunks, table).offsets)
    assert checked > 10000


# --- (c) damaged chunks ------------------------------------------------------------------------------


Seed = tuple[bytes, int, tuple[int, ...]]


@pytest.fixture(scope="module")
def seeds(corpus_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Seed]:
    """Real chunks to damage: (data, end, record offsets), from the shared corpus (many providers,
    resident and back-referenced templates) and the fixture bundles."""
    found = []
    for path in sorted(corpus_dir.rglob("*.evtx")):
        found += [(c.data, c.end) for c in list(iter_chunks(path))[:2] if c.status == "ok"]
    work = tmp_path_factory.mktemp("seeds")
    for number, data in enumerate(_logs_in_bundles()[:3]):
        found += _chunks_of(data, work / f"{number}.evtx")[:3]
    out = []
    for data, end in found:
        out.append((data, end, tuple(s.offset for s in walk_records(data, end) if s.valid)))
    assert len(out) > 30
    return out


FIELD_VALUES = st.sampled_from([0, 1, 2, 3, 4, 6, 14, 15, 24, 28, 0x0F, 0x2A2A, 0xFFFF, 0xFFFFFFFF])
# Damage kinds, weighted towards the ones that leave the chunk accounted for and reach the key rules.
KINDS = (
    ["values"] * 4 + ["template"] * 2 + ["field"] * 2 + ["shrink", "magic", "tail", "flip", "zero", "bytes"]
)


def _u32(raw: bytearray, at: int) -> int:
    return struct.unpack_from("<I", raw, at)[0] if 0 <= at <= len(raw) - 4 else 0


def _put(raw: bytearray, at: int, value: int, width: int) -> None:
    if 0 <= at <= len(raw) - width:
        raw[at : at + width] = (value % 2 ** (8 * width)).to_bytes(width, "little")


def _descriptors(raw: bytearray, record: int) -> int:
    """Where the record's value count stands, if its template is as Windows writes it (steers damage to
    the fields the scan reads: after a resident definition's data, or right after the instance)."""
    resident = _u32(raw, record + 34) == record + 38
    return record + 62 + _u32(raw, record + 58) if resident else record + 38


@st.composite
def damaged(draw: st.DrawFn, seeds: list[Seed]) -> tuple[bytes, int]:
    """A real chunk with a few bytes, fields or magics changed, maybe cut short, and an `end`."""
    data, end, records = draw(st.sampled_from(seeds))
    raw = bytearray(data)
    tail = records[-1] + _u32(raw, records[-1] + 4) if records else 512
    for _ in range(draw(st.integers(0, 5))):
        kind = draw(st.sampled_from(KINDS))
        record = draw(st.sampled_from(records)) if records else 512
        size = _u32(raw, record + 4)
        if kind == "template":  # the definition offset: resident (then a data size), or elsewhere
            edges = st.sampled_from([record + 38, 511, 512, CHUNK_SIZE - 24, CHUNK_SIZE - 23])
            definition = draw(st.one_of(edges, st.integers(0, CHUNK_SIZE + 64)))
            _put(raw, record + 34, definition, 4)
            if definition == record + 38 and draw(st.booleans()):
                _put(raw, record + 58, draw(st.one_of(st.integers(0, 400), st.integers(0, 2**32 - 1))), 4)
        elif kind == "values":  # the value count, a value's size or type (3: event id, 14: provider)
            at = _descriptors(raw, record)
            index = draw(st.integers(0, 16))
            field = draw(st.sampled_from(["count", "size", "type"]))
            if field == "count":
                _put(raw, at, draw(st.one_of(st.integers(0, 20), st.integers(0, 2**32 - 1))), 4)
            elif field == "size":
                _put(raw, at + 4 + 4 * index, draw(st.one_of(st.integers(0, 4), st.integers(0, 0xFFFF))), 2)
            else:
                _put(raw, at + 6 + 4 * index, draw(st.sampled_from([0, 1, 2, 6, 0x21, 0xFF])), 1)
        elif kind == "shrink" and records:  # the last record made shorter, its size copy moved with it
            record = records[-1]
            size = _u32(raw, record + 4)
            new = draw(st.one_of(st.integers(24, 80), st.integers(24, max(24, size))))
            if draw(st.booleans()):  # a resident definition, which the shorter record may cut
                _put(raw, record + 34, record + 38, 4)
            _put(raw, record + 4, new, 4)
            _put(raw, record + new - 4, new, 4)
            raw[record + new : record + size] = bytes(len(raw[record + new : record + size]))
            tail = record + new
        elif kind == "magic":  # a stray signature inside a record or after the last one
            where = draw(st.integers(record + 8, min(record + max(size, 8), CHUNK_SIZE - 4)))
            _put(raw, min(where - where % 8, CHUNK_SIZE - 4), 0x2A2A, 4)
        elif kind == "field":  # any header or BinXML field of a record
            at = record + draw(st.one_of(st.integers(0, 120), st.integers(0, max(0, size - 1))))
            width = draw(st.sampled_from([1, 2, 4]))
            _put(raw, at, draw(st.one_of(FIELD_VALUES, st.integers(0, 2 ** (8 * width) - 1))), width)
        elif kind == "tail":  # a stray byte after the last record
            raw[draw(st.integers(min(tail, CHUNK_SIZE - 1), CHUNK_SIZE - 1))] = draw(st.integers(1, 255))
        else:
            at = draw(st.integers(0, CHUNK_SIZE - 1))
            span = draw(st.integers(1, 64))
            if kind == "flip":
                raw[at] ^= 1 << draw(st.integers(0, 7))
            elif kind == "zero":
                raw[at : at + span] = bytes(len(raw[at : at + span]))
            else:
                raw[at : at + span] = draw(st.binary(min_size=span, max_size=span))[: len(raw) - at]
    if draw(st.integers(0, 9)) == 0:  # cut short (a truncated file's last slot)
        raw = raw[: draw(st.integers(0, CHUNK_SIZE - 1))]
    choice = draw(st.integers(0, 5))  # mostly the chunk's own `end`
    if choice == 3:
        end = draw(st.sampled_from([CHUNK_SIZE, *records, tail, tail + 23, tail + 24]))
    elif choice == 4:
        end = draw(st.integers(-100, 3 * CHUNK_SIZE))
    elif choice == 5:
        end = draw(st.sampled_from([-(2**63), 2**63 - 1]))
    return bytes(raw), end


@native
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_damaged_chunks_scan_the_same(seeds: list[Seed], data: st.DataObject) -> None:
    batch = data.draw(st.lists(damaged(seeds), min_size=1, max_size=4))
    drawn = np.frombuffer(data.draw(st.binary(min_size=1, max_size=300)), dtype=np.uint8) % 2 == 1
    for ids in [*tables(), drawn]:
        both(batch, ids)


# --- (d) good and bad chunks in one batch ------------------------------------------------------------


def _with(data: bytes, at: int, patch: bytes) -> bytes:
    return data[:at] + patch + data[at + len(patch) :]


@native
def test_a_batch_mixing_good_and_bad_chunks_scans_the_same(tmp_path: Path) -> None:
    """Damaged chunks among good ones: the same arrays both ways, the damaged ones (and only they) are
    bad, and each good chunk's records are what it gives scanned alone."""
    log = max(_logs_in_bundles(), key=len)
    good = [c for c in _chunks_of(log, tmp_path / "log.evtx") if len(c[0]) == CHUNK_SIZE]
    assert len(good) >= 3
    (first, first_end), (second, second_end), (third, third_end) = good[:3]
    records = walk_records(first, first_end)
    stray = records[1].offset + 40
    stray -= stray % 8
    last = records[-1]
    tail = last.offset + last.size
    assert tail + 24 <= CHUNK_SIZE, "the chunk needs free space after its last record"
    broken = [
        (first[: CHUNK_SIZE // 2], first_end),  # cut short
        (_with(first, stray, MAGIC), first_end),  # a signature inside a record
        (_with(first, records[2].offset + 4, struct.pack("<I", 27)), first_end),  # a size too small
        (_with(first, records[2].offset + 8, b"\xff"), first_end),  # the size copy kept: only an id changes
        (_with(first, records[1].offset + records[1].size - 4, b"\x01"), first_end),  # size copy differs
        (_with(first, tail + 8, b"\x01"), CHUNK_SIZE),  # data after the last record, before `end`
        (_with(first, 512, b"\x00"), first_end),  # no record at 512
    ]
    expected_bad = [True, True, True, False, True, True, True]
    batch, bad = [], []
    for (data, end), is_bad in zip(broken, expected_bad, strict=True):
        batch += [(second, second_end), (data, end)]
        bad += [False, is_bad]
    batch.append((third, third_end))
    bad.append(False)
    for table in tables():
        found = both(batch, table)
        assert found.bad.tolist() == bad
        for index, (data, end) in enumerate(batch):
            if bad[index]:
                continue
            alone = both([(data, end)], table)
            lo, hi = int(found.bounds[index]), int(found.bounds[index + 1])
            assert hi - lo == len(alone.offsets) > 10
            assert np.array_equal(found.offsets[lo:hi] - index * CHUNK_SIZE, alone.offsets)
            assert np.array_equal(found.event_ids[lo:hi], alone.event_ids)
            placed = found.provider_at[lo:hi]
            assert np.array_equal(np.where(placed >= 0, placed - index * CHUNK_SIZE, -1), alone.provider_at)
