"""End to end: every forge scenario bundle through the whole pipeline, checked against its ground truth;
the shared corpus of real logs analysed completely with nothing diagnosed."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from evtxcorr.analyze import Options, analyze
from evtxcorr.forge import list_scenarios, load_scenario, truth

SHARED_NIC = "shared-nic-sole-dc-path"


def _bundle(bundles_dir: Path, scenario_id: str) -> Path:
    path = bundles_dir / scenario_id
    assert path.is_dir(), f"committed fixture bundle missing: {path} (run `evtxcorr forge fixtures`)"
    return path


@pytest.fixture(scope="module")
def reports(bundles_dir: Path) -> dict[str, object]:
    return {sid: analyze([_bundle(bundles_dir, sid)]) for sid in list_scenarios()}


def test_every_scenario_has_a_committed_bundle(bundles_dir: Path) -> None:
    assert set(list_scenarios()) >= {
        SHARED_NIC,
        "dc-unreachable-cluster-wide",
        "kerberos-delegation-missing",
        "secure-channel-broken",
        "cno-disabled-or-deleted",
        "link-down-second-dc-path",
        "noise-only",
        "shared-nic-twice",
        "shared-nic-link-restored",
    }
    for sid in list_scenarios():
        _bundle(bundles_dir, sid)


@pytest.mark.parametrize("scenario_id", list_scenarios())
def test_shared_nic_finding_matches_truth(reports: dict, scenario_id: str) -> None:
    report = reports[scenario_id]
    expected = [t for t in truth(load_scenario(scenario_id)) if t["cause"] == SHARED_NIC]
    found = [f for f in report.findings if f.cause == SHARED_NIC]
    assert len(found) == len(expected), (scenario_id, [(f.host, f.confidence) for f in found])
    incidents = {i.id: i for i in report.incidents}
    for want in expected:
        host_short = want["host"].split(".")[0].lower()
        matches = [f for f in found if f.host.split(".")[0].lower() == host_short]
        assert len(matches) == 1, (want, [(f.host, f.incident) for f in found])
        finding = matches[0]
        assert finding.confidence >= 0.8, finding
        incident = incidents[finding.incident]
        # the incident's span covers the true incident time, within the clock-skew tolerance
        slack = timedelta(minutes=5)
        assert incident.start - slack <= want["start"] <= incident.end + slack, (incident, want)


@pytest.mark.parametrize("scenario_id", list_scenarios())
def test_every_finding_cites_records_that_exist(reports: dict, scenario_id: str) -> None:
    report = reports[scenario_id]
    frame = report.frame
    for finding in report.findings:
        cited = [row for ev in finding.evidence for row in ev.rows]
        assert cited, finding
        for row in cited:
            record = frame.loc[row]
            assert record["file"] and record["record_id"] > 0
        required = [ev for ev in finding.evidence if ev.role == "required"]
        assert required and all(ev.status == "present" for ev in required)


def test_noise_only_has_no_incident(reports: dict) -> None:
    report = reports["noise-only"]
    assert report.findings == []
    assert report.incidents == []
    assert len(report.frame) > 1000


def test_backends_agree_on_the_positive_bundle(bundles_dir: Path) -> None:
    rust = analyze([_bundle(bundles_dir, SHARED_NIC)])
    pure = analyze([_bundle(bundles_dir, SHARED_NIC)], Options(backend="python-evtx"))
    assert len(rust.frame) == len(pure.frame)
    assert [(f.cause, f.host, f.confidence) for f in rust.findings] == [
        (f.cause, f.host, f.confidence) for f in pure.findings
    ]


def test_corpus_is_read_completely_and_nothing_is_diagnosed(corpus_dir: Path, corpus_expected: dict) -> None:
    report = analyze([corpus_dir])
    by_name = {Path(e.path).name: e for e in report.ledger.entries}
    for name, floor in corpus_expected.items():
        entry = by_name[name]
        assert entry.format == "evtx"
        assert entry.records >= floor, (name, entry)
    assert report.findings == []
    licence = by_name["LICENSE-MIT"]
    assert licence.status == "skipped" and licence.reason
