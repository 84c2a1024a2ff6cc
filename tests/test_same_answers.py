"""Same answers (issue 16, point 4): a bundle sent as exports gets the findings its .evtx gets.

Every scenario is forged as Event Viewer XML (the export customers send most); the key scenario and a
look-alike are forged in every export format. Formats that carry no payload (PowerShell and Event
Viewer CSV) name the same cause on the same host, unconfirmed, with the evidence only the payload could
decide marked unknown ("payload not checked"), never absent: payload tests are three-valued on such
rows (ruleset.match_unknown), and diagnose keeps what they may show unknown.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from evtxcorr.analyze import Options, analyze
from evtxcorr.forge import forge_bundle, list_scenarios
from evtxcorr.forge.exports import FORMATS
from evtxcorr.ruleset import load_ruleset

pytestmark = pytest.mark.slow

ZONE = "Asia/Tokyo"
NO_PAYLOAD = ("csv", "csv-ja", "csv-eventviewer", "csv-eventviewer-ja")
KEY_SCENARIO = "shared-nic-sole-dc-path"
RULES_SKEW_S = load_ruleset().settings.skew_s


def _findings(report) -> list[tuple]:  # type: ignore[no-untyped-def]
    return sorted((f.cause, f.host, f.incident, round(f.confidence, 3)) for f in report.findings)


def _causes(report) -> list[tuple]:  # type: ignore[no-untyped-def]
    return sorted((f.cause, f.host) for f in report.findings)


@pytest.fixture(scope="module")
def baseline(bundles_dir: Path) -> dict[str, object]:
    return {sid: analyze([bundles_dir / sid]) for sid in list_scenarios()}


def _exported(tmp_path: Path, scenario: str, fmt: str) -> object:
    forge_bundle(scenario, tmp_path, format=fmt, tz=ZONE)
    return analyze([tmp_path / scenario], Options(source_tz=ZONE))


@pytest.mark.parametrize("scenario", list_scenarios())
def test_every_scenario_as_event_viewer_xml(tmp_path: Path, baseline: dict, scenario: str) -> None:
    report = _exported(tmp_path, scenario, "xml")
    assert _findings(report) == _findings(baseline[scenario])
    assert report.ledger.totals()["records_unique"] == baseline[scenario].ledger.totals()["records_unique"]


@pytest.mark.parametrize("fmt", [f for f in FORMATS if f != "xml" and f not in NO_PAYLOAD])
def test_every_format_with_payload_gives_the_same_findings(tmp_path: Path, baseline: dict, fmt: str) -> None:
    assert _findings(_exported(tmp_path, KEY_SCENARIO, fmt)) == _findings(baseline[KEY_SCENARIO])


@pytest.mark.parametrize("fmt", NO_PAYLOAD)
def test_exports_without_payload_name_the_same_cause_unconfirmed(
    tmp_path: Path, baseline: dict, fmt: str
) -> None:
    """Provider + event id alone open the incident and name the cause on the host; what only the
    payload could decide (the 5719 reason, the 21502 status code) is unknown, so the finding is
    unconfirmed with a range reaching below the threshold, and says why."""
    report = _exported(tmp_path, KEY_SCENARIO, fmt)
    expected = baseline[KEY_SCENARIO]
    assert not report.frame["payload_known"].any()
    assert _causes(report) == _causes(expected)
    for finding in report.findings:
        assert finding.certainty == "unconfirmed"
        assert finding.confidence_range[0] < 0.5 <= finding.confidence <= finding.confidence_range[1]
        unchecked = {e.key for e in finding.evidence if e.note_key == "evidence.payload_not_checked"}
        assert {"no-logon-servers", "migration-no-authority", "delegation-error"} <= unchecked
        assert all(e.status != "absent" for e in finding.evidence if e.key in unchecked)
    # every incident of the .evtx is there, on the same hosts; possible matches may open more.
    # Starts are on the reference clock; without payload no node's offset can be measured (1126 names
    # its interface in the payload), so they agree within the skew tolerance only.
    tolerance = timedelta(seconds=RULES_SKEW_S)
    for incident in expected.incidents:
        assert any(
            i.hosts == incident.hosts and abs(i.start - incident.start) <= tolerance for i in report.incidents
        ), incident
