"""The fuzz harness (scripts/fuzz, tests/fuzzing.py): its mutations reach each structure they are
meant for, and a short seeded run (what CI can afford) finds parse() keeping its promises."""

from __future__ import annotations

import random
from pathlib import Path

import fuzzing
import pytest

from evtxcorr.parse.chunks import FILE_HEADER_SIZE


@pytest.fixture(scope="module")
def seeds(corpus_dir: Path) -> list[bytes]:
    found = fuzzing.all_seeds(corpus_dir)
    assert len(found) >= 6  # real chunks and forged logs
    return found


@pytest.mark.parametrize(
    ("mutator", "region"),
    [
        (fuzzing.m_file_header, (0, 128)),
        (fuzzing.m_chunk_header, (FILE_HEADER_SIZE, FILE_HEADER_SIZE + 128)),
        (fuzzing.m_string_table, (FILE_HEADER_SIZE + 128, FILE_HEADER_SIZE + 384)),
        (fuzzing.m_template_table, (FILE_HEADER_SIZE + 384, FILE_HEADER_SIZE + 512)),
        (fuzzing.m_record_size, (FILE_HEADER_SIZE + 512, None)),
        (fuzzing.m_binxml, (FILE_HEADER_SIZE + 512, None)),
    ],
)
def test_each_mutator_changes_its_structure(seeds: list[bytes], mutator, region) -> None:  # type: ignore[no-untyped-def]
    start, end = region
    changed = 0
    for number in range(40):
        buf = bytearray(seeds[number % len(seeds)])
        before = bytes(buf)
        mutator(buf, random.Random(number))
        diff = [i for i, (a, b) in enumerate(zip(before, buf, strict=True)) if a != b]
        assert all(start <= i < (end or len(buf)) for i in diff), mutator.__name__
        changed += bool(diff)
    assert changed >= 20  # an interesting value can equal the old one now and then


def test_template_chain_mutation_points_a_definition_at_a_definition(seeds: list[bytes]) -> None:
    forged = fuzzing.forged_seeds()[0]
    definitions = fuzzing._template_definitions(bytearray(forged))
    assert definitions, "forged logs define their templates in the chunk"
    buf = bytearray(forged)
    fuzzing.m_template_chain(buf, random.Random(3))
    assert buf != bytearray(forged)


def test_mutation_is_deterministic(seeds: list[bytes]) -> None:
    first = [fuzzing.mutate(seeds[0], random.Random(5)) for _ in range(2)]
    assert first[0] == first[1] and first[0] != seeds[0]


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_bounded_seeded_run_finds_parse_keeping_its_promises(
    seeds: list[bytes], tmp_path: Path, seed: int
) -> None:
    # 3 x 200 inputs (about 20 s each on one core; pytest-xdist spreads them): the CI share of fuzzing.
    run = fuzzing.run_loop(seeds, seed=seed, runs=200, seconds=None, timeout=10, out=tmp_path)
    assert run.executions == 200
    assert [f"{f.kind} ({f.backend}): {f.detail}" for f in run.findings] == []
    assert list(tmp_path.iterdir()) == []  # no finding saved, no input left behind


def test_mutating_a_file_cut_behind_a_record_signature_does_not_break_the_harness(seeds: list[bytes]) -> None:
    from evtxcorr.parse.chunks import RECORD_MAGIC

    cut = seeds[0][: FILE_HEADER_SIZE + 600] + RECORD_MAGIC  # a signature with no size behind it
    for number in range(50):
        buf = bytearray(cut)
        fuzzing.m_binxml(buf, random.Random(number))
        fuzzing.m_record_size(buf, random.Random(number))
