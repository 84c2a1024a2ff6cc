"""Findings after diagnose: one verdict per cluster-wide cause, benign explanations apart and never above
a real cause, measured clock offsets attached (evtxcorr/diagnose/verdicts.py), and how reports show them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evtxcorr.analyze import analyze
from evtxcorr.diagnose.verdicts import NOTE_REAL_CAUSE, finalize
from evtxcorr.model import ClockOffset, Evidence, Finding
from evtxcorr.render import render
from evtxcorr.ruleset import load_ruleset

RULES = load_ruleset()
BOOT = "boot-time-dc-not-ready"
OUTAGE = "dc-unreachable-cluster-wide"


def _finding(
    cause: str, host: str, confidence: float, rows: tuple[int, ...] = (1,), incident: str = "I1"
) -> Finding:
    evidence = (
        Evidence(
            "required",
            "anchor:netlogon-5719-no-logon-servers",
            "netlogon-5719-no-logon-servers",
            "present",
            0.0,
            rows,
        ),
        Evidence("supporting", "x", "link-down", "absent", 0.0, ()),
    )
    return Finding(cause, incident, host, confidence, evidence)


def test_a_cluster_cause_is_one_finding_per_incident_naming_every_node() -> None:
    findings = [
        _finding(OUTAGE, "hv01", 0.9, (1,)),
        _finding(OUTAGE, "hv02", 0.95, (2,)),
        _finding(OUTAGE, "hv03", 0.9, (3,)),
    ]
    reported, rejected = finalize(findings, [_finding(OUTAGE, "hv04", 0.3, (4,))], RULES)
    (merged,) = reported
    assert (merged.host, merged.hosts, merged.confidence) == (None, ("hv01", "hv02", "hv03"), 0.95)
    assert merged.evidence[0].rows == (1, 2, 3)  # every node's anchors cited
    assert rejected == []  # hv04's own shortfall is part of the cluster verdict, not a separate cause


def test_host_scoped_causes_stay_per_host() -> None:
    findings = [
        _finding("shared-nic-sole-dc-path", "hv01", 0.95),
        _finding("shared-nic-sole-dc-path", "hv02", 0.9, incident="I2"),
    ]
    reported, _ = finalize(findings, [], RULES)
    assert [(f.host, f.hosts, f.kind) for f in reported] == [("hv01", (), "cause"), ("hv02", (), "cause")]


def test_a_benign_finding_never_stands_beside_a_real_cause_in_its_incident() -> None:
    boot = _finding(BOOT, "hv01", 0.8)
    real = _finding("shared-nic-sole-dc-path", "hv02", 0.95)
    reported, rejected = finalize([real, boot], [], RULES)
    assert [(f.cause, f.kind) for f in reported] == [("shared-nic-sole-dc-path", "cause")]
    (demoted,) = rejected
    assert demoted.kind == "benign" and demoted.evidence[-1].note_key == NOTE_REAL_CAUSE
    alone, _ = finalize([_finding(BOOT, "hv01", 0.8, incident="I2"), real], [], RULES)
    assert {(f.cause, f.kind) for f in alone} == {(BOOT, "benign"), ("shared-nic-sole-dc-path", "cause")}


def test_a_benign_pattern_that_did_not_apply_is_not_listed_as_ruled_out() -> None:
    no_boot = Finding(
        BOOT, "I1", "hv01", 0.0, (Evidence("required", "host-starting", "system-boot", "absent", -1.0, ()),)
    )
    refuted = _finding(BOOT, "hv02", 0.1)
    _, rejected = finalize([], [no_boot, refuted], RULES)
    assert [f.host for f in rejected] == ["hv02"]


def test_measured_offsets_are_attached_for_the_cited_hosts() -> None:
    clock = [ClockOffset("hv01", 0.0, 0.0, "hv01", 0), ClockOffset("hv02", 12.5, 1.0, "hv01", 2)]
    reported, _ = finalize(
        [_finding("shared-nic-sole-dc-path", "hv01", 0.9, (7, 8))],
        [],
        RULES,
        clock=clock,
        host_of_row={7: "hv01", 8: "hv02"},
    )
    assert reported[0].skew_seconds == {"hv01": 0.0, "hv02": 12.5}


@pytest.fixture(scope="module")
def boot_reports(bundles_dir: Path) -> dict[str, object]:
    return {sid: analyze([bundles_dir / sid]) for sid in (BOOT, "boot-time-cluster-name-failed")}


def test_boot_time_5719s_are_explained_in_one_short_section_not_as_causes(boot_reports: dict) -> None:
    report = boot_reports[BOOT]
    assert {(f.cause, f.kind) for f in report.findings} == {(BOOT, "benign")} and len(report.findings) == 2
    doc = json.loads(render(report, "json"))
    assert doc["findings"] == [] and len(doc["benign"]) == 2 and doc["unexplained"] == []
    markdown = render(report, "md")
    assert "2 incident(s) explained as Start-up: the domain controller was not reachable yet" in markdown
    assert markdown.count("**Verdict:**") == 1  # the verdict says no cause; the benign line stands apart
    html = render(report, "html", lang="ja")
    assert '<details class="benign">' in html and "2 件のインシデントは" in html


def test_real_errors_in_the_same_boot_are_weighed_as_causes(boot_reports: dict) -> None:
    report = boot_reports["boot-time-cluster-name-failed"]
    assert [(f.cause, f.host, f.kind) for f in report.findings] == [("unknown-auth-failure", "hv02", "cause")]
    boot = next(f for f in report.rejected if f.cause == BOOT)
    refuting = {e.key for e in boot.evidence if e.role == "refuting" and e.status == "present"}
    assert {"cluster-name-error", "migration-no-authority"} <= refuting
    assert json.loads(render(report, "json"))["benign"] == []


def test_evidence_tables_show_what_decided_and_fold_the_rest(bundles_dir: Path) -> None:
    report = analyze([bundles_dir / "shared-nic-sole-dc-path"])
    doc = json.loads(render(report, "json"))
    (finding,) = doc["findings"]
    assert len(finding["reasons"]) == len(finding["decisive"]) + len(
        finding["also_checked"]
    )  # JSON keeps all
    assert finding["also_checked"] and all(
        r["contribution"] == 0 and r["status"] == "absent" and r["role"] != "required"
        for r in finding["also_checked"]
    )
    first = finding["decisive"][0]
    assert first["role"] == "required"
    html = render(report, "html")
    assert html.count('<details class="also-checked">') == 1
    why = html.split('<table class="grid why">')[1].split("</table>")[0]
    assert all(r["description"].split("(")[0][:40] not in why for r in finding["also_checked"])
    markdown = render(report, "md")
    assert sum(line.startswith("Also checked (absent, no weight): ") for line in markdown.splitlines()) == 1
