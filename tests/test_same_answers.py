"""Same answers (issue 16, point 4): a bundle sent as exports gets the findings its .evtx gets.

Every scenario is forged as Event Viewer XML (the export customers send most); the key scenario and a
look-alike are forged in every export format. Formats that carry no payload (PowerShell and Event
Viewer CSV) still anchor the same incidents through provider + event id, but their findings differ
until the Sigma evaluator treats payload conditions on such rows as unknown rather than absent (a
three-valued evaluation owned by ruleset/ and diagnose/): those cases are marked xfail(strict), so the
day they pass, the marker must go.
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
PENDING = (
    "no payload in CSV exports: payload evidence must be 'unknown', which needs the three-valued Sigma "
    "evaluation and the diagnose change (ruleset/sigma.py, diagnose/: not in this branch)"
)
KEY_SCENARIO = "shared-nic-sole-dc-path"
RULES_SKEW_S = load_ruleset().settings.skew_s


def _findings(report) -> list[tuple]:  # type: ignore[no-untyped-def]
    return sorted((f.cause, f.host, f.incident, round(f.confidence, 3)) for f in report.findings)


def _incidents(report) -> list[tuple]:  # type: ignore[no-untyped-def]
    return sorted((i.id, i.hosts) for i in report.incidents)


def _starts(report) -> list:  # type: ignore[no-untyped-def]
    return [i.start for i in sorted(report.incidents, key=lambda i: i.id)]


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
def test_exports_without_payload_anchor_the_same_incidents(tmp_path: Path, baseline: dict, fmt: str) -> None:
    """Provider + event id alone open the same incident at the same time on the same hosts; the
    cause named may differ until payload evidence can be 'unknown' (then this test just passes)."""
    report = _exported(tmp_path, KEY_SCENARIO, fmt)
    assert not report.frame["payload_known"].any()
    assert _incidents(report) == _incidents(baseline[KEY_SCENARIO])
    # Incident starts are on the reference clock; without payload no node's offset can be measured
    # (1126 names its interface in the payload), so they agree within the skew tolerance only.
    tolerance = timedelta(seconds=RULES_SKEW_S)
    for mine, theirs in zip(_starts(report), _starts(baseline[KEY_SCENARIO]), strict=True):
        assert abs(mine - theirs) <= tolerance
    if _findings(report) != _findings(baseline[KEY_SCENARIO]):
        pytest.xfail(PENDING)
