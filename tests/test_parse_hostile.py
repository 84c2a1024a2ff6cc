"""Hostile .evtx input at the parser level (issue 15: point 1, point 9's cut header and invalid UTF-16,
bounded work in both backends): nothing hangs or escapes parse(), an input costs at most the records or
the chunk it spoils, and what is lost or altered is said in the ledger."""

from __future__ import annotations

import io
import itertools
import zipfile
from pathlib import Path

import evtx
import fuzzing
import hostile_evtx
import pytest

from evtxcorr.ledger import InputEntry
from evtxcorr.model import Source
from evtxcorr.parse import BACKENDS, parse, prescan, pure, rust
from evtxcorr.parse.chunks import (
    CHUNK_SIZE,
    FILE_HEADER_SIZE,
    Chunk,
    iter_chunks,
    mini_file,
    stitched,
    walk_records,
)
from evtxcorr.parse.chunks import _read_chunk as read_chunk

FUZZ_FIXTURES = Path(__file__).parent / "fixtures" / "fuzz"
HANG_GUARD = 60.0  # seconds: fuzzing.check() reports a 'timeout' finding past this instead of hanging


def _parse(path: Path, backend: str = "evtx") -> tuple[list[dict], InputEntry]:
    entry = InputEntry(path=path.name)
    return list(parse(Source(path, path.name, "evtx"), entry, backend=backend)), entry


def _write(tmp_path: Path, data: bytes, name: str = "System.evtx") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _slots(data: bytes) -> int:
    return len(walk_records(data[FILE_HEADER_SIZE:]))


def _chunk(data: bytes) -> Chunk:
    """The chunk of an in-memory one-chunk file."""
    return read_chunk(0, FILE_HEADER_SIZE, data[FILE_HEADER_SIZE:])


@pytest.fixture(scope="module")
def forged_chunk(committed_bundles: Path) -> bytes:
    """The first chunk of a forged System.evtx, as a one-chunk file."""
    with zipfile.ZipFile(committed_bundles / "shared-nic-sole-dc-path.zip") as archive:
        name = next(n for n in sorted(archive.namelist()) if n.endswith("HV01/System.evtx"))
        raw = archive.read(name)
    return mini_file(raw[FILE_HEADER_SIZE : FILE_HEADER_SIZE + CHUNK_SIZE])


# --- point 1 and the fuzz findings: chains that loop --------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_template_chain_looping_back_with_a_damaged_record_ends(
    forged_chunk: bytes, tmp_path: Path, backend: str
) -> None:
    # The case: 4 bytes point a template definition's `next` at itself, and one record is
    # damaged so that the fallback (python-evtx) loads the chunk's templates: it looped forever.
    data = hostile_evtx.damaged_tail(hostile_evtx.looped_chain(forged_chunk, hostile_evtx.TEMPLATE_TABLE))
    assert fuzzing.check(data, backend, tmp_path, HANG_GUARD) is None
    records, entry = _parse(_write(tmp_path, data), backend)
    assert entry.records + entry.records_failed == _slots(data)
    assert len(records) >= _slots(data) - 1


def test_python_evtx_chains_stop_where_they_loop(forged_chunk: bytes) -> None:
    for table, length in itertools.product((hostile_evtx.STRING_TABLE, hostile_evtx.TEMPLATE_TABLE), (1, 2)):
        chunk = hostile_evtx.looped_chain(forged_chunk, table, length)[FILE_HEADER_SIZE:]
        header = pure._BoundedChunkHeader(chunk, 0)
        clean = pure._BoundedChunkHeader(forged_chunk[FILE_HEADER_SIZE:], 0)
        # the looped node is still loaded; only the chain behind it is lost
        assert 1 <= len(header.strings()) <= len(clean.strings())
        assert 1 <= len(header.templates()) <= len(clean.templates())


def test_a_string_chain_looping_back_is_cut_before_the_rust_parser_sees_it(
    forged_chunk: bytes, tmp_path: Path
) -> None:
    # pyevtx-rs follows the chain inside one call, holding the GIL: nothing could stop it. The copy it
    # is given has the loop cut, and it still reads every record (names are read where they are).
    data = hostile_evtx.looped_chain(forged_chunk, hostile_evtx.STRING_TABLE, 2)
    assert fuzzing.check(data, "evtx", tmp_path, HANG_GUARD) is None  # its watchdog ends a hang
    chunk = data[FILE_HEADER_SIZE:]
    patched = prescan.for_rust(chunk, {})
    assert patched != chunk and len(patched) == len(chunk)
    records, entry = _parse(_write(tmp_path, data))
    assert len(records) == _slots(data) and entry.records_failed == 0
    assert {r["parser"] for r in records} == {"evtx"}


def test_saved_fuzz_findings_replay_clean() -> None:
    found = sorted(FUZZ_FIXTURES.glob("*.evtx"))
    assert len(found) >= 3
    run = fuzzing.replay(FUZZ_FIXTURES, HANG_GUARD)
    assert run.executions == 2 * len(found)
    assert [f"{f.backend}: {f.detail}" for f in run.findings] == []


# --- a Rust panic ----------------------------------------------------------------------------------------


class PanicException(BaseException):  # noqa: N818 - the name pyo3 gives it; BaseException, like pyo3's
    """Stands in for pyo3's PanicException: no input found so far makes pyevtx-rs 0.14 panic."""


_REAL_PARSER = evtx.PyEvtxParser


class _PanickingParser:
    """pyevtx-rs's parser, panicking after `after` records."""

    def __init__(self, source: object, *, after: int, **kwargs: object) -> None:
        self.inner = _REAL_PARSER(source, **kwargs)
        self.after = after

    def records(self):  # type: ignore[no-untyped-def]
        for number, item in enumerate(self.inner.records()):
            if number == self.after:
                raise PanicException("index out of bounds: the len is 3 but the index is 7")
            yield item


@pytest.mark.parametrize("after", [0, 5])
def test_a_rust_panic_costs_the_rest_of_its_chunk_to_the_other_backend(
    forged_chunk: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, after: int
) -> None:
    monkeypatch.setattr(
        rust.evtx, "PyEvtxParser", lambda source, **kw: _PanickingParser(source, after=after, **kw)
    )
    records, entry = _parse(_write(tmp_path, forged_chunk))
    assert len(records) == _slots(forged_chunk) and entry.records_failed == 0
    assert sum(r["parser"] == "evtx" for r in records) == after
    assert entry.recovered == len(records) - after
    assert "chunk 0: evtx stopped part way (evtx parser panicked: index out of bounds" in "".join(
        entry.warnings
    )


def test_a_panic_anywhere_in_a_chunk_costs_that_chunk_only(
    corpus_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import evtxcorr.parse as parse_module

    source = corpus_dir / "system.evtx"
    path = _write(tmp_path, source.read_bytes()[: FILE_HEADER_SIZE + 3 * CHUNK_SIZE])
    per_chunk = [len(c.slots) for c in iter_chunks(path)]
    read_chunk = parse_module._read_chunk

    def panicking(chunk, *args, **kwargs):  # type: ignore[no-untyped-def]
        if chunk.index == 1:
            raise PanicException("called `Option::unwrap()` on a `None` value")
        return read_chunk(chunk, *args, **kwargs)

    monkeypatch.setattr(parse_module, "_read_chunk", panicking)
    records, entry = _parse(path)
    assert len(records) == per_chunk[0] + per_chunk[2]
    assert entry.chunks_failed == 1 and entry.records_failed == per_chunk[1]
    assert any("chunk 1" in w and "Option::unwrap()" in w for w in entry.warnings)

    def interrupted(chunk, *args, **kwargs):  # type: ignore[no-untyped-def]
        raise KeyboardInterrupt

    monkeypatch.setattr(parse_module, "_read_chunk", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _parse(path)


def test_the_panic_test_double_is_what_pyo3_raises() -> None:
    assert rust.is_panic(PanicException("x")) and not isinstance(PanicException("x"), Exception)
    assert not rust.is_panic(RuntimeError("x")) and not rust.is_panic(KeyboardInterrupt())


# --- the per-chunk time bound -------------------------------------------------------------------------


def test_a_chunk_past_its_time_bound_is_given_up_in_both_backends(
    forged_chunk: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _write(tmp_path, forged_chunk)
    slots = _slots(forged_chunk)
    monkeypatch.setattr(rust, "CHUNK_CPU_SECONDS", 0.0)
    records, entry = _parse(path)
    assert len(records) == slots and entry.recovered == slots  # the other backend read them all
    assert "chunk 0: evtx stopped part way (chunk time bound reached (0 s of CPU))" in entry.warnings
    monkeypatch.setattr(pure, "CHUNK_CPU_SECONDS", 0.0)
    for backend in BACKENDS:
        records, entry = _parse(path, backend)
        assert records == [] and entry.records_failed == slots and entry.status == "partial"
        located = [w for w in entry.warnings if "could not be parsed" in w]
        assert located and all("chunk time bound reached (0 s of CPU)" in w for w in located)


# --- expansion and nesting -----------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_binxml_values_referenced_many_times_are_bounded(tmp_path: Path, backend: str) -> None:
    # 10**6 elements from a 500-byte record: pyevtx-rs would build them all (10**9 at depth 9).
    data = hostile_evtx.binxml_bomb(10, 6)
    records, entry = _parse(_write(tmp_path, data), backend)
    assert [r["record_id"] for r in records] == [1]
    assert entry.records_failed == 1
    failed = next(w for w in entry.warnings if "record id 2" in w)
    assert "evtx: record expands past 200000 nodes" in failed
    assert "python-evtx: BoundExceeded: record expands past 200000 nodes" in failed


def test_the_expansion_bound_is_what_prescan_computes() -> None:
    # The bound counts a node per byte of each template (86 here, for 13 tokens): 10**3 elements are
    # let through, 10**4 are not (python-evtx reads them, within its own count of nodes).
    chunk = _chunk(hostile_evtx.binxml_bomb(10, 3))
    assert prescan.check_chunk(chunk.data, chunk.slots) == {}
    chunk = _chunk(hostile_evtx.binxml_bomb(10, 4))
    (finding,) = prescan.check_chunk(chunk.data, chunk.slots).values()
    assert "expands past" in finding.reason and not finding.invalid_text
    patched = prescan.for_rust(chunk.data, {0: finding})
    assert [patched[at] for at in finding.binxml_values] == [prescan.BINARY_VALUE]


def test_nesting_deeper_than_pyevtx_rs_reads_is_read_by_python_evtx(tmp_path: Path) -> None:
    data = hostile_evtx.binxml_bomb(1, 100)  # one reference per level: 100 elements, 100 deep
    with pytest.raises(RuntimeError, match="nested too deeply"):
        list(evtx.PyEvtxParser(io.BytesIO(data)).records())
    records, entry = _parse(_write(tmp_path, data))
    assert [(r["record_id"], r["parser"]) for r in records] == [(1, "evtx"), (2, "python-evtx")]
    assert entry.status == "ok"


def test_a_template_holding_an_instance_of_itself_fails_its_records_only(tmp_path: Path) -> None:
    data = hostile_evtx.self_instancing_template()
    for backend in BACKENDS:
        records, entry = _parse(_write(tmp_path, data), backend)
        assert records == [] and entry.records_failed == 2 and entry.status == "partial"
        assert any("template instance inside template definition" in w for w in entry.warnings)


# --- point 9: invalid UTF-16, a header cut short --------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("in_template", [False, True])
def test_invalid_utf16_is_marked_and_said_not_dropped(
    tmp_path: Path, backend: str, in_template: bool
) -> None:
    data = hostile_evtx.invalid_utf16(in_template=in_template)
    records, entry = _parse(_write(tmp_path, data), backend)
    assert len(records) == 2 and entry.status == "ok"
    expected = ("HV0\ufffd", ("abcd",)) if in_template else ("HV01", ("ab\ufffdcd",))
    assert {(r["host"], r["data"]) for r in records} == {expected}
    assert {r["parser"] for r in records} == {"python-evtx"}
    assert any(w.startswith("2 record(s) hold invalid UTF-16 text") for w in entry.warnings)


def test_pyevtx_rs_drops_a_lone_surrogate_without_a_word() -> None:
    # Why the records above are not taken from the Rust backend (revisit if this ever fails).
    data = hostile_evtx.invalid_utf16(in_template=False)
    xml = [r["data"] for r in evtx.PyEvtxParser(io.BytesIO(data)).records()]
    assert len(xml) == 2 and all("<Data>abcd</Data>" in x for x in xml)


def test_prescan_finds_nothing_in_real_and_forged_logs(corpus_dir: Path, bundles_dir: Path) -> None:
    paths = sorted(corpus_dir.rglob("*.evtx")) + sorted(bundles_dir.rglob("*.evtx"))[:12]
    records = 0
    for path in paths:
        for chunk in iter_chunks(path):
            if chunk.readable:
                assert prescan.check_chunk(chunk.data, chunk.slots) == {}, (path.name, chunk.index)
                assert prescan.for_rust(chunk.data, {}) is chunk.data, (path.name, chunk.index)
                records += len(chunk.slots)
    assert records > 13_000


@pytest.mark.parametrize("size", [100, 2000, FILE_HEADER_SIZE - 1])
def test_a_file_cut_inside_its_header_is_skipped_with_the_reason(
    forged_chunk: bytes, tmp_path: Path, size: int
) -> None:
    records, entry = _parse(_write(tmp_path, forged_chunk[:size]))
    assert records == [] and entry.status == "skipped"
    assert entry.reason == f"shorter than an EVTX file header ({size} of 4096 bytes; cut short)"


def test_a_header_only_file_is_an_empty_log(forged_chunk: bytes, tmp_path: Path) -> None:
    records, entry = _parse(_write(tmp_path, forged_chunk[:FILE_HEADER_SIZE]))
    assert records == [] and entry.status == "ok"
    assert "the log holds no chunks (an empty log)" in entry.warnings


# --- selective decoding: the record at 512 is only where the parser starts -----------------------------


def _chain(chunk: Chunk, wanted: list[int]) -> Chunk:
    """`chunk` set up as selective parsing does when record 512 is not wanted: the lead, then `wanted`."""
    slots = walk_records(chunk.data, chunk.end)
    chunk.records_end = slots[-1].offset + slots[-1].size
    chunk.slots = [slots[0], *(slots[i] for i in wanted)]
    chunk.lead_blank = True
    return chunk


def test_a_blanked_lead_record_is_not_decoded_and_the_wanted_ones_are_unchanged(forged_chunk: bytes) -> None:
    whole = _chunk(forged_chunk)
    full = dict(item for item in rust.parse_chunk(whole.data) if not isinstance(item, Exception))
    slots = walk_records(whole.data, whole.end)
    assert len(slots) > 4
    chunk = _chain(_chunk(forged_chunk), [2, len(slots) - 1])
    data = stitched(chunk)
    lead = slots[0].offset + 24
    assert data[lead] == 0 and chunk.data[lead] != 0  # an end-of-stream token; the chunk itself untouched
    sizes = {slot.offset + 4 + i for slot in chunk.slots for i in range(4)}
    changed = {i for i, (a, b) in enumerate(zip(data, chunk.data, strict=True)) if a != b}
    assert lead in changed and changed <= sizes | {lead}  # templates and names the others use stay put
    wanted = {slots[2].record_id, slots[-1].record_id}
    read = [item for item in rust.parse_chunk(data, wanted) if not isinstance(item, Exception)]
    assert [record_id for record_id, _ in read] == [slots[i].record_id for i in (0, 2, len(slots) - 1)]
    assert read[0][1] is None  # the lead: not wanted, not converted
    for record_id, record in read[1:]:
        assert record == full[record_id]
    lead_xml = next(evtx.PyEvtxParser(io.BytesIO(mini_file(data))).records())["data"]
    assert "".join(lead_xml.split()).endswith("?><Event></Event>")  # nothing of it was expanded


def test_a_blanked_lead_record_is_not_checked_by_prescan() -> None:
    """Both records hold a lone surrogate: with record 1 only the parser's starting point, only record 2
    is unfit; read whole, both are."""
    data = hostile_evtx.invalid_utf16(in_template=False)
    whole = _chunk(data)
    assert sorted(prescan.unfit(whole)) == [slot.offset for slot in whole.slots]
    chained = _chain(_chunk(data), [1])
    assert list(prescan.unfit(chained)) == [chained.slots[1].offset]
