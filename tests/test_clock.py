"""Node clock offsets measured from records several nodes log for one moment (evtxcorr/correlate/clock.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import synthetic_events as se

from evtxcorr.analyze import analyze
from evtxcorr.correlate import clock, correlate
from evtxcorr.forge import load_scenario
from evtxcorr.render import render
from evtxcorr.ruleset import load_ruleset, match

RULES = load_ruleset()
SETTINGS = clock.clock_settings(RULES.settings.clock)


def _estimate(rows: list[dict]) -> dict[str, tuple[float, float]]:
    table = se.frame(rows)
    return {
        c.host: (c.offset_s, c.uncertainty_s) for c in clock.estimate(table, match(table, RULES), SETTINGS)
    }


def _blip(t: float, offsets: dict[str, float], node: str = "HV01") -> list[dict]:
    """1126 about `node`'s interface, logged by every host at true time t on its own clock."""
    return [se.fc(h, t + o, 1126, f"{node} - Ethernet", node, "Net 1") for h, o in offsets.items()]


def test_one_moment_logged_by_every_node_gives_their_offsets() -> None:
    offsets = {"HV01": 0.0, "HV02": 42.0, "HV03": -7.5}
    estimate = _estimate(_blip(100, offsets))
    assert estimate["hv01"] == (0.0, 0.0)
    assert estimate["hv02"][0] == pytest.approx(42.0) and estimate["hv03"][0] == pytest.approx(-7.5)
    assert estimate["hv02"][1] == 6.0  # the spread settings allow a 1126 (INFERRED), stated


def test_a_link_down_then_1126_on_the_others_ties_the_failing_node_with_a_wide_uncertainty() -> None:
    rows = [se.link_down("HV01", 0), se.fc("HV02", 10 + 30, 1126, "HV01 - Ethernet", "HV01", "Net 1")]
    estimate = _estimate(rows)
    offset, uncertainty = estimate["hv02"]
    assert uncertainty == 11.0 and abs(offset - 30) <= uncertainty  # lag 3..25 s


def test_nothing_is_claimed_without_shared_moments() -> None:
    assert (
        _estimate([se.netlogon_5719("HV01", 0), se.netlogon_5719("HV02", 5), se.link_down("HV03", 1)]) == {}
    )


def test_records_that_disagree_widen_the_interval_instead_of_lying() -> None:
    rows = _blip(0, {"HV01": 0.0, "HV02": 10.0}) + _blip(3600, {"HV01": 0.0, "HV02": 30.0})
    offset, uncertainty = _estimate(rows)["hv02"]
    assert offset == pytest.approx(20.0) and uncertainty >= 10.0


def test_aligned_times_take_each_measured_offset_off() -> None:
    ns = np.array([1_000_000_000, 2_000_000_000], dtype=np.int64)
    out = clock.aligned_ns(ns, np.array(["hv01", "hv02"]), {"hv02": 1.5})
    assert out.tolist() == [1_000_000_000, 500_000_000]


def test_correlation_chains_anchors_on_the_reference_clock() -> None:
    """HV02's clock runs 400 s fast: its 5719 logged 700 s after HV01's happened 300 s after it, so once
    the measured offset is taken off the two chain into one incident (gap 400 s, no skew tolerance)."""
    rows = _blip(-60, {"HV01": 0.0, "HV02": 400.0}) + [
        se.netlogon_5719("HV01", 0),
        se.netlogon_5719("HV02", 700),
    ]
    table = se.frame(rows)
    signals = match(table, RULES)
    offsets = clock.offsets_s(clock.estimate(table, signals, SETTINGS))
    assert offsets == {"hv01": 0.0, "hv02": pytest.approx(400.0)}
    assert len(correlate(table, signals, RULES, gap_s=400, skew_s=0)) == 2
    (incident,) = correlate(table, signals, RULES, gap_s=400, skew_s=0, offsets=offsets)
    assert incident.hosts == ("hv01", "hv02")
    assert str(table.loc[incident.anchor_rows[-1], "time"]).startswith("2026-09-15 14:49:10")  # raw time kept


CHECKED = (
    "kerberos-clock-skew",
    "shared-nic-sole-dc-path",
    "shared-nic-twice",
    "shared-nic-link-restored",
    "link-down-second-dc-path",
)


@pytest.fixture(scope="module")
def reports(bundles_dir: Path) -> dict[str, object]:
    names = (*CHECKED, "noise-only", "kerberos-delegation-missing", "boot-time-dc-not-ready")
    return {sid: analyze([bundles_dir / sid]) for sid in names}


def _truth(scenario_id: str, reference: str) -> dict[str, float]:
    offsets = {n.name.lower(): n.clock_offset for n in load_scenario(scenario_id).nodes}
    return {host: value - offsets[reference] for host, value in offsets.items()}


def test_forged_offsets_are_measured_within_2_s_where_nodes_log_one_moment(reports: dict) -> None:
    measured = reports["kerberos-clock-skew"].clock
    assert {c.host for c in measured} == {"hv01", "hv02", "hv03", "hv04"}
    truth = _truth("kerberos-clock-skew", measured[0].reference)
    for c in measured:
        assert abs(c.offset_s - truth[c.host]) <= 2.0, c
    assert max(c.offset_s for c in measured) > 300  # HV03, the skewed host, 6 minutes ahead


@pytest.mark.parametrize("scenario_id", CHECKED)
def test_every_stated_uncertainty_holds_against_the_forged_offsets(reports: dict, scenario_id: str) -> None:
    measured = reports[scenario_id].clock
    assert measured, scenario_id
    truth = _truth(scenario_id, measured[0].reference)
    for c in measured:
        assert abs(c.offset_s - truth[c.host]) <= c.uncertainty_s + 1e-6, c


@pytest.mark.parametrize(
    "scenario_id", ["noise-only", "kerberos-delegation-missing", "boot-time-dc-not-ready"]
)
def test_nothing_is_claimed_where_no_node_shares_a_moment(reports: dict, scenario_id: str) -> None:
    report = reports[scenario_id]
    assert report.clock == []
    assert "not measured (no events that several nodes logged" in render(report, "md")


def test_offsets_show_in_the_header_the_timeline_and_the_finding(reports: dict) -> None:
    report = reports["kerberos-clock-skew"]
    (finding,) = report.findings
    assert finding.cause == "kerberos-clock-skew" and finding.skew_seconds["hv03"] > 300
    markdown = render(report, "md")
    assert (
        "**Clock offsets:** HV01.contoso.local +0.0 s ±0.0, " in markdown
        and "HV03.contoso.local +37" in markdown
    )
    html = render(report, "html")
    assert '<tspan class="offset" x="8" dy="11">+37' in html
    assert '"offset_s": 37' in render(report, "json")
