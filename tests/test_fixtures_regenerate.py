"""The committed fixture bundles are exactly what the forge writes today, and every parser reads them alike.

If a forge change is intended, rewrite them with `evtxcorr forge fixtures` and commit the result
(tests/fixtures/PROVENANCE.md lists them).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from evtx_readback import READERS, expected_records, strip

from evtxcorr.forge import FIXTURES, expand, regenerate_fixtures
from evtxcorr.forge.bundle import FIXTURE_DIR, provenance_rows


def _digests(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_regenerated_fixtures_are_byte_identical_to_the_committed_ones(tmp_path: Path) -> None:
    written = regenerate_fixtures(tmp_path)
    assert written and all(p.is_file() for p in written)
    fresh, committed = _digests(tmp_path), _digests(FIXTURE_DIR)
    assert sorted(fresh) == sorted(committed), "fixture file list differs: run evtxcorr forge fixtures"
    changed = [name for name in fresh if fresh[name] != committed[name]]
    assert not changed, f"{len(changed)} fixture files differ, e.g. {changed[:3]}"


def test_fixture_list_covers_every_layout_and_scenario() -> None:
    from evtxcorr.forge import LAYOUTS, list_scenarios

    assert {scenario for _, scenario, layout, _ in FIXTURES if layout == "plain"} == set(list_scenarios())
    assert {layout for _, _, layout, _ in FIXTURES} == set(LAYOUTS)
    assert sum(p.stat().st_size for p in FIXTURE_DIR.rglob("*") if p.is_file()) < 4_000_000


def test_provenance_lists_every_committed_bundle_with_its_digest() -> None:
    text = (FIXTURE_DIR.parent / "PROVENANCE.md").read_text(encoding="utf-8")
    for row in provenance_rows(FIXTURE_DIR):
        assert row in text, f"PROVENANCE.md is stale: run evtxcorr forge fixtures ({row[:60]})"


@pytest.fixture(scope="module")
def committed_evtx(bundles_dir: Path) -> list[Path]:
    """Every committed .evtx (conftest unpacks the committed zips once per run)."""
    files = [p for p in sorted(bundles_dir.rglob("*")) if p.suffix.lower() == ".evtx"]
    assert len(files) > 100
    return files


def _three_parsers_agree(paths: list[Path]) -> int:
    """Read each file with python-evtx, Rust evtx and libevtx; assert they agree; return the record count."""
    mismatches, errors, records = [], [], 0
    for path in paths:
        readings = {name: reader(path) for name, reader in READERS.items()}
        errors += [f"{path.name} {name}: {r.errors[:1]}" for name, r in readings.items() if r.errors]
        rust = strip(readings["rust"].records, "recovered")
        records += len(rust)
        mismatches += [
            f"{path} {name}: {len(r.records)} vs {len(rust)} records"
            for name, r in readings.items()
            if strip(r.records, "recovered") != rust
        ]
    assert not errors and not mismatches, (errors[:3], mismatches[:3])
    return records


def test_one_committed_bundle_reads_identically_in_all_three_parsers(committed_evtx: list[Path]) -> None:
    paths = [p for p in committed_evtx if "kerberos-delegation-missing" in p.parts]
    assert len(paths) == 8
    assert _three_parsers_agree(paths) > 1000


@pytest.mark.slow
def test_every_committed_fixture_reads_identically_in_all_three_parsers(committed_evtx: list[Path]) -> None:
    assert _three_parsers_agree(committed_evtx) > 25000


def test_committed_plain_bundle_holds_what_the_scenario_expands_to(bundles_dir: Path) -> None:
    folder = bundles_dir / "shared-nic-sole-dc-path"
    for (fqdn, channel), events in expand("shared-nic-sole-dc-path").items():
        path = folder / fqdn.split(".")[0] / f"{channel.replace('/', '%4')}.evtx"
        rust = READERS["rust"](path)
        assert strip(rust.records, "recovered") == expected_records(events)


def test_committed_logs_have_the_stale_header_of_a_live_copy(bundles_dir: Path) -> None:
    """Multi-chunk logs declare one chunk fewer than they hold, as copies off a live host do: a reader
    that trusts the header (python-evtx's records()) misses records that evtxcorr reads."""
    import Evtx.Evtx as python_evtx

    from evtxcorr.analyze import analyze

    system = bundles_dir / "shared-nic-sole-dc-path" / "HV01" / "System.evtx"
    data = system.read_bytes()
    declared, written = int.from_bytes(data[42:44], "little"), (len(data) - 4096) // 65536
    assert written >= 2 and declared == written - 1 and data[120] & 1  # stale count, dirty flag
    with python_evtx.Evtx(str(system)) as log:
        trusting = sum(1 for _ in log.records())
    entry = next(e for e in analyze([system]).ledger.entries if e.path.endswith("System.evtx"))
    assert trusting < entry.records == len(READERS["rust"](system).records)
    assert any(f"declares {declared} chunks, {written} found" in w for w in entry.warnings)
