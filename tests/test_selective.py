"""Selective parsing (issue 12): decoding only the records a rule may match gives the same answers as
decoding every record (--all-records), and never drops a record a full parse would match.

The scanner reads record headers and the System template's fixed substitution values with numpy; these
tests hold it to the slow, exact path on every committed fixture bundle, the shared corpus, damaged
chunks and forged logs of both provider forms (substitution value and template literal).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest

from evtxcorr.analyze import Options, analyze
from evtxcorr.forge.damage import Damage, apply_damage
from evtxcorr.ledger import Ledger
from evtxcorr.model import Report, Source
from evtxcorr.parse import parse
from evtxcorr.parse import scan as scan_module
from evtxcorr.parse.chunks import iter_chunks, walk_records
from evtxcorr.parse.scan import scan, scan_many
from evtxcorr.ruleset import load_ruleset, match, with_builtin
from evtxcorr.ruleset.wanted import wanted_pairs

FIXTURES = Path(__file__).parent / "fixtures" / "bundles"
BUNDLES = sorted(FIXTURES.glob("*.zip"))
COUNTS = ("records", "records_failed", "duplicates", "conflicts", "chunks", "chunks_failed", "recovered")


def _cited(report: Report, rows: tuple[int, ...]) -> list[tuple[str, int]]:
    frame = report.frame
    return sorted((str(frame.at[row, "file"]), int(frame.at[row, "record_id"])) for row in rows)


def answers(report: Report) -> dict[str, object]:
    """What a user reads off a report, with rows named by (file, record id) rather than table position."""

    def finding(f: object) -> tuple:
        evidence = tuple(
            (e.key, e.status, round(e.contribution, 9), tuple(_cited(report, e.rows)))
            for e in f.evidence  # type: ignore[attr-defined]
        )
        return (
            f.cause,
            f.incident,
            f.host,
            round(f.confidence, 9),
            f.confidence_range,
            f.certainty,
            evidence,
        )  # type: ignore[attr-defined]

    return {
        "findings": [finding(f) for f in report.findings],
        "rejected": [finding(f) for f in report.rejected],
        "incidents": [(i.id, i.start, i.end, tuple(_cited(report, i.rows))) for i in report.incidents],
        "signals": sorted((*_cited(report, (row,))[0], names) for row, names in report.signals.items()),
        "inputs": [
            (e.path, e.status, e.hosts, e.channels, *(getattr(e, c) for c in COUNTS))
            for e in report.ledger.entries
        ],
        "clusters": [(c.name, tuple(c.hosts)) for c in report.clusters],
    }


def _same(paths: list[Path], tmp_path: Path) -> Report:
    selective = analyze(paths, Options(work_dir=tmp_path))
    every = analyze(paths, Options(work_dir=tmp_path, all_records=True))
    assert answers(selective) == answers(every)
    return selective


@pytest.mark.parametrize("bundle", BUNDLES, ids=lambda p: p.stem)
def test_every_fixture_bundle_gives_the_same_answers(bundle: Path, tmp_path: Path) -> None:
    report = _same([bundle], tmp_path)
    assert report.ledger.totals()["records"] > 0


def test_fixture_bundles_skip_most_records(tmp_path: Path) -> None:
    """Not vacuous: on plain bundles most records are counted, not decoded, and chunks are skipped."""
    report = analyze([FIXTURES / "shared-nic-sole-dc-path.zip"], Options(work_dir=tmp_path))
    totals = report.ledger.totals()
    assert totals["records_undecoded"] > totals["records"] * 0.8
    assert totals["chunks_skipped"] > 0
    assert report.findings and report.findings[0].cause == "shared-nic-sole-dc-path"


def test_the_corpus_gives_the_same_answers(corpus_dir: Path, tmp_path: Path) -> None:
    _same(sorted(corpus_dir.rglob("*.evtx")), tmp_path)


def test_bundles_given_together_give_the_same_answers(tmp_path: Path) -> None:
    """Several clusters, and a log given twice (all its records duplicates): decoded whole, exact."""
    picked = [FIXTURES / "shared-nic-sole-dc-path.zip", FIXTURES / "secure-channel-broken.zip"]
    copy = tmp_path / "copy" / "second-collection.zip"
    copy.parent.mkdir()
    copy.write_bytes(picked[0].read_bytes())
    report = _same([*picked, copy], tmp_path)
    assert report.ledger.totals()["duplicates"] > 0


# --- the record level: every record a full parse matches is decoded -----------------------------------


def _matched_keys(path: Path, wanted: object) -> tuple[set, set, Ledger]:
    ruleset = load_ruleset(with_builtin())
    import pandas as pd

    from evtxcorr.table import to_frame

    out = []
    for mode in (None, wanted):
        ledger = Ledger()
        entry = ledger.add(str(path))
        records = list(parse(Source(path, str(path), "evtx"), entry, wanted=mode))
        frame = to_frame(records, ledger)
        hits = match(frame, ruleset) if len(frame) else {}
        rows = frame.loc[sorted(hits)] if hits else pd.DataFrame(columns=["chunk", "offset"])
        out.append({(int(c), int(o)) for c, o in zip(rows["chunk"], rows["offset"], strict=True)})
        out.append(ledger)
    return out[0], out[2], out[3]


def _corpus_and_fixture_logs(corpus_dir: Path, tmp_path: Path) -> list[Path]:
    logs = sorted(corpus_dir.rglob("*.evtx"))
    for bundle in BUNDLES[:6]:
        with zipfile.ZipFile(bundle) as archive:
            for name in archive.namelist():
                if name.lower().endswith(".evtx"):
                    target = tmp_path / bundle.stem / Path(name).name
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(archive.read(name))
                    logs.append(target)
    return logs


def test_no_record_a_full_parse_matches_is_left_undecoded(corpus_dir: Path, tmp_path: Path) -> None:
    wanted = wanted_pairs(load_ruleset(with_builtin()))
    assert wanted is not None
    checked = 0
    for path in _corpus_and_fixture_logs(corpus_dir, tmp_path):
        full, selective, ledger = _matched_keys(path, wanted)
        assert full <= selective, path
        checked += len(full)
    assert checked > 50  # the rules do match records in these logs


def test_damaged_chunks_are_decoded_whole(tmp_path: Path) -> None:
    """A damaged log reads the same selectively: damaged chunks take the slow, exact path."""
    with zipfile.ZipFile(FIXTURES / "shared-nic-sole-dc-path.zip") as archive:
        name = next(n for n in archive.namelist() if n.endswith("System.evtx"))
        clean = archive.read(name)
    wanted = wanted_pairs(load_ruleset(with_builtin()))
    damages = [
        Damage("bad_chunk_crc", chunk=1),
        Damage("garbage_record", chunk=1, record=0),
        Damage("garbage_record", chunk=2, record=40),
        Damage("garbage_record", chunk=2, record=40, fix_crc=False),
        Damage("bad_chunk_magic", chunk=1),
        Damage("truncate", chunk=2),
    ]
    for number, damage in enumerate(damages):
        kind = f"{damage.kind}-{number}"
        path = tmp_path / f"{kind}.evtx"
        path.write_bytes(bytes(apply_damage(bytearray(clean), damage)))
        full, selective, _ = _matched_keys(path, wanted)
        assert full <= selective, kind
        ledgers = []
        for mode in (None, wanted):
            ledger = Ledger()
            entry = ledger.add(str(path))
            list(parse(Source(path, str(path), "evtx"), entry, wanted=mode))
            ledgers.append(tuple(getattr(entry, c) for c in COUNTS))
        assert ledgers[0] == ledgers[1], kind


def test_scan_agrees_with_the_slow_walk(corpus_dir: Path, tmp_path: Path) -> None:
    """Where the vectorised scan answers, its records are exactly the slow walk's."""
    answered = 0
    for path in _corpus_and_fixture_logs(corpus_dir, tmp_path)[:80]:
        chunks = [c for c in iter_chunks(path) if c.status == "ok"]
        for chunk, keys in zip(chunks, scan_many([(c.data, c.end) for c in chunks]), strict=True):
            if keys is None:
                continue
            answered += 1
            slow = walk_records(chunk.data, chunk.end)
            assert keys.slots() == slow
    assert answered > 100


def test_scan_refuses_a_stray_signature() -> None:
    """A record signature inside a record's data (at an 8-aligned offset) is not taken for a record."""
    with zipfile.ZipFile(FIXTURES / "shared-nic-sole-dc-path.zip") as archive:
        name = next(n for n in archive.namelist() if n.endswith("System.evtx"))
        data = archive.read(name)
    chunk = next(c for c in iter_chunks_bytes(data) if c.status == "ok")
    keys = scan(chunk.data, chunk.end)
    assert keys is not None and len(keys) > 2
    raw = bytearray(chunk.data)
    inside = int(keys.offsets[1]) + 32
    inside += -inside % 8
    raw[inside : inside + 4] = b"\x2a\x2a\x00\x00"
    assert scan(bytes(raw), chunk.end) is None


def iter_chunks_bytes(data: bytes):  # noqa: ANN201 - test helper
    import tempfile

    with tempfile.NamedTemporaryFile(suffix=".evtx", delete=False) as handle:
        handle.write(data)
    return list(iter_chunks(Path(handle.name)))


def test_event_ids_and_providers_read_by_position_match_the_decoded_ones(
    corpus_dir: Path, tmp_path: Path
) -> None:
    """The scanner's (provider, event id) of every sure record equals what the parser decodes."""
    checked = 0
    for path in _corpus_and_fixture_logs(corpus_dir, tmp_path)[:60]:
        ledger = Ledger()
        entry = ledger.add(str(path))
        decoded = {
            (r["chunk"], r["offset"]): (r["provider"], r["event_id"])
            for r in parse(Source(path, str(path), "evtx"), entry)
        }
        for chunk in iter_chunks(path):
            if chunk.status != "ok":
                continue
            keys = scan(chunk.data, chunk.end)
            if keys is None:
                continue
            for i in np.flatnonzero(~keys.unsure).tolist():
                where = (chunk.index, chunk.file_offset + int(keys.offsets[i]))
                if where not in decoded:
                    continue
                provider, event_id = decoded[where]
                assert int(keys.event_ids[i]) == event_id, (path, where)
                at = int(keys.provider_at[i])
                if at >= 0:
                    name = chunk.data[at : at + int(keys.provider_len[i])].decode("utf-16-le").rstrip("\x00")
                    assert name == provider, (path, where)
                checked += 1
    assert checked > 1000


def test_the_process_pool_gives_the_same_answers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Files read by pool workers (forced here: fixtures are under the size that starts a pool) give
    the same report, ledger included, as reading them one after another."""
    import evtxcorr.parse.guard as guard
    import evtxcorr.parse.pool as pool

    bundle = [FIXTURES / "shared-nic-sole-dc-path.zip", FIXTURES / "dc-unreachable-cluster-wide.zip"]
    sequential = analyze(bundle, Options(work_dir=tmp_path, jobs=1))
    monkeypatch.setattr(pool, "MIN_PARALLEL_BYTES", 0)
    started: list[int] = []
    real = guard.parse_many

    def counting(jobs, *args, **kwargs):  # noqa: ANN001, ANN202 - spy
        started.append(len(jobs))
        yield from real(jobs, *args, **kwargs)

    monkeypatch.setattr("evtxcorr.analyze.parse_many", counting)
    pooled = analyze(bundle, Options(work_dir=tmp_path, jobs=2))
    assert started and started[0] > 2
    assert answers(pooled) == answers(sequential)
    assert [e.as_dict() for e in pooled.ledger.entries] == [e.as_dict() for e in sequential.ledger.entries]


@pytest.mark.parametrize(
    ("headers", "read", "unfound"),
    [
        ([10, 11, 12, 13], [], []),  # every announced id has its header, in order
        ([10, 11, 13], [], [12]),
        ([10, 11, 13, 14], [], [12]),  # as many headers as announced ids, one of them foreign
        ([10, 12, 11, 13], [], []),  # out of order, all there
        ([10, 11, 11, 13], [12], []),  # read although its header was not found
        ([10, 11, 11, 13], [], [12]),
        ([9, 10, 11, 12], [], [13]),
        (range(10, 14), [], []),  # ids rising by one (the scan says so): a range
        (range(10, 13), [], [13]),
        (range(11, 15), [10], []),
        (range(11, 15), [], [10]),
    ],
)
def test_ids_announced_but_not_found(headers: list[int] | range, read: list[int], unfound: list[int]) -> None:
    from evtxcorr.parse import _unfound
    from evtxcorr.parse.chunks import Chunk

    chunk = Chunk(0, 4096, b"", "ok", header={"first_record_id": 10, "last_record_id": 13})
    given = headers if isinstance(headers, range) else np.array(headers, dtype=np.uint64)
    assert _unfound(chunk, read, given) == unfound


def test_the_scan_tells_which_chunks_ids_rise_by_one(corpus_dir: Path) -> None:
    """As the record ids the scan read say: checked against the ids themselves, chunk by chunk, with a
    chunk whose ids were made to skip one (its checksum is not checked here)."""

    path = next(p for p in sorted(corpus_dir.rglob("*.evtx")) if p.stat().st_size > 1 << 20)
    chunks = [(c.data, c.end) for c in iter_chunks(path) if c.readable][:40]
    data = bytearray(chunks[3][0])
    first = scan(bytes(data), chunks[3][1])
    assert first is not None and len(first) > 2
    at = int(first.offsets[1]) + 8
    data[at : at + 8] = (int(first.record_ids[1]) + 5).to_bytes(8, "little")
    chunks[3] = (bytes(data), chunks[3][1])
    batch = scan_module.scan_batch(chunks)
    rising = batch.rising_by_one()
    assert not rising[3]
    for index in range(batch.count):
        keys = batch.keys(index)
        if keys is not None:
            ids = keys.record_ids.astype(np.int64).tolist()
            assert rising[index] == all(b - a == 1 for a, b in zip(ids, ids[1:], strict=False)), index


def test_a_block_of_chunks_is_scanned_where_it_lies(corpus_dir: Path) -> None:
    """iter_chunks reads 128 chunks at once and each chunk views its part: the batch is scanned in that
    block without a copy, with the same arrays as from a join; a chunk's bytes are copied out on demand."""
    from evtxcorr.parse import _joined
    from evtxcorr.parse.chunks import BLOCK_CHUNKS

    path = max(corpus_dir.rglob("*.evtx"), key=lambda p: p.stat().st_size)
    chunks = list(iter_chunks(path))[:BLOCK_CHUNKS]
    assert len(chunks) > 8 and all(isinstance(c.raw, memoryview) and c.readable for c in chunks)
    sound = chunks
    joined = _joined(sound)
    assert joined is not None and joined.obj is chunks[0].raw.obj and len(joined) == len(sound) * 65536
    pairs = [(c.raw, c.end) for c in sound]
    in_place = scan_module.scan_batch(pairs, joined=joined)
    copied = scan_module.scan_batch(pairs, scratch=bytearray(len(pairs) * 65536))
    for name in (
        "bad",
        "bounds",
        "owner",
        "offsets",
        "sizes",
        "record_ids",
        "written",
        "event_ids",
        "unsure",
    ):
        assert np.array_equal(getattr(in_place, name), getattr(copied, name)), name
    assert bytes(in_place.buf) == bytes(copied.buf)
    assert _joined(sound[1:] + sound[:1]) is None  # out of order: not one run of the block
    assert isinstance(chunks[0].data, bytes) and chunks[0].data == bytes(chunks[0].raw)


def test_ids_wrapping_round_do_not_rise_by_one() -> None:
    """Record ids 2**64-1 then 0 differ by one in uint64 arithmetic: not a chunk whose ids rise."""
    ids = np.array([2**64 - 1, 0, 5, 6], dtype=np.uint64)
    zeros = np.zeros(4, dtype=np.int64)
    batch = scan_module.ScanBatch(
        count=2,
        bad=np.zeros(2, dtype=bool),
        bounds=np.array([0, 2, 4]),
        owner=np.array([0, 0, 1, 1]),
        offsets=zeros,
        sizes=zeros,
        record_ids=ids,
        written=zeros,
        event_ids=zeros,
        unsure=np.zeros(4, dtype=bool),
        provider_at=zeros,
        provider_len=zeros,
        template_at=zeros,
        candidate=None,
        buf=b"",
    )
    assert batch.rising_by_one().tolist() == [False, True]
