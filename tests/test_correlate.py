"""Incidents: grouping of anchors by gap and clock skew, the lookback/lookahead reach, row ownership."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
import synthetic_events as se

from evtxcorr.correlate import correlate, group_anchors
from evtxcorr.ruleset import load_ruleset, match

RULES = load_ruleset()


def run(rows: list[dict], **options: float) -> tuple[object, list]:
    table = se.frame(rows)
    signals = match(table, RULES)
    return table, correlate(table, signals, RULES, **options)


def test_no_signals_no_incidents() -> None:
    assert run(se.cluster())[1] == []


def test_signals_without_anchors_open_no_incident() -> None:
    rows = se.cluster() + [
        se.link_down("HV01", 0),
        se.fc("HV02", 3, 1126, "x", "HV01", "n"),
        se.link_up("HV01", 60),
    ]
    assert run(rows)[1] == []


def test_shared_nic_is_one_incident_with_its_lookback_rows() -> None:
    table, incidents = run(se.cluster() + se.shared_nic())
    assert len(incidents) == 1
    incident = incidents[0]
    assert incident.id == "I1"
    kinds = sorted(int(table.loc[r, "event_id"]) for r in incident.rows)
    assert kinds == [
        27,
        1126,
        1129,
        1228,
        4202,
        5719,
        21300,
        21502,
    ]  # link-up at +30 min is beyond the lookahead
    assert sorted(int(table.loc[r, "event_id"]) for r in incident.anchor_rows) == [1228, 5719, 21502]
    assert incident.hosts == ("hv01", "hv02")
    assert incident.start == se.at(0) and incident.end == se.at(300)


def test_lookahead_reaches_the_link_up_when_long_enough() -> None:
    table, incidents = run(se.cluster() + se.shared_nic(), lookahead_s=1800)
    assert 32 in {int(table.loc[r, "event_id"]) for r in incidents[0].rows}


def test_two_incidents_far_apart_are_numbered_in_time_order() -> None:
    rows = se.cluster() + se.shared_nic("HV02", 4000) + se.shared_nic("HV01", 0)
    table, incidents = run(rows)
    assert [i.id for i in incidents] == ["I1", "I2"]
    assert incidents[0].start < incidents[1].start
    assert not set(incidents[0].rows) & set(incidents[1].rows)
    assert {table.loc[r, "host_key"] for r in incidents[1].anchor_rows} == {"hv02"}


def test_a_gap_longer_than_gap_s_splits() -> None:
    rows = [se.netlogon_5719("HV01", 0), se.netlogon_5719("HV01", 100)]
    assert len(run(rows, gap_s=60, skew_s=0)[1]) == 2
    assert len(run(rows, gap_s=100, skew_s=0)[1]) == 1


def test_skew_tolerance_joins_anchors_across_hosts_only() -> None:
    same_host = [se.netlogon_5719("HV01", 0), se.netlogon_5719("HV01", 100)]
    other_host = [se.netlogon_5719("HV01", 0), se.netlogon_5719("HV02", 100)]
    assert len(run(same_host, gap_s=30, skew_s=120)[1]) == 2
    assert len(run(other_host, gap_s=30, skew_s=120)[1]) == 1
    assert len(run(other_host, gap_s=30, skew_s=0)[1]) == 2


def test_a_row_in_two_reaches_goes_to_the_nearest_incident() -> None:
    rows = [se.netlogon_5719("HV01", 0), se.link_down("HV01", 500), se.netlogon_5719("HV01", 1300)]
    table, incidents = run(rows, gap_s=600, lookback_s=900, lookahead_s=900, skew_s=0)
    assert len(incidents) == 2
    owner = [i.id for i in incidents if any(table.loc[r, "event_id"] == 27 for r in i.rows)]
    assert owner == ["I1"]  # 500 s after I1's anchor, 800 s before I2's


def test_group_anchors_counts_gaps() -> None:
    base = np.datetime64("2026-09-15T00:00:00", "ns")
    times = base + np.array([0, 10, 500, 505], dtype="timedelta64[s]").astype("timedelta64[ns]")
    hosts = np.array(["a", "b", "a", "a"])
    assert group_anchors(times, hosts, 100, 0).tolist() == [0, 0, 1, 1]


@pytest.mark.parametrize("offset", [-110, 110])
def test_per_host_clock_offset_within_skew_keeps_one_incident(offset: float) -> None:
    rows = [
        se.netlogon_5719("HV01", 0),
        se.netlogon_5719("HV02", offset),
        se.netlogon_5719("HV03", 2 * offset),
    ]
    incidents = run(rows, gap_s=30, skew_s=120)[1]
    assert len(incidents) == 1 and incidents[0].hosts == ("hv01", "hv02", "hv03")
    assert incidents[0].end - incidents[0].start == timedelta(seconds=abs(2 * offset))


def test_a_signal_without_a_time_is_left_out() -> None:
    table = se.frame([se.netlogon_5719("HV01", 0), se.netlogon_5719("HV01", 30)])
    table.loc[1, "time"] = pd.NaT
    signals = match(table, RULES)
    incidents = correlate(table, signals, RULES)
    assert [i.rows for i in incidents] == [(0,)]
