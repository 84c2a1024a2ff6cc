"""Diagnosis on synthetic event tables: the required outcomes for each look-alike, absence as evidence
and its limits (missing logs), clock skew, and the confidence arithmetic."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import synthetic_events as se

from evtxcorr.correlate import clock, correlate
from evtxcorr.diagnose import Coverage, diagnose
from evtxcorr.discover import discover
from evtxcorr.forge import forge_bundle, list_scenarios, load_scenario, truth
from evtxcorr.ledger import Ledger
from evtxcorr.parse import parse
from evtxcorr.ruleset import load_ruleset, match
from evtxcorr.table import to_frame

RULES = load_ruleset()
SHARED = "shared-nic-sole-dc-path"


def run(rows: list[dict], **options: object) -> tuple[list, list, list]:
    table = se.frame(rows)
    signals = match(table, RULES)
    incidents = correlate(table, signals, RULES)
    findings, rejected = diagnose(table, incidents, signals, RULES, **options)
    return incidents, findings, rejected


def reported(findings: list) -> list[tuple[str, str]]:
    return [(f.cause, f.host) for f in findings]


def evidence(finding: object, key: str) -> object:
    return next(e for e in finding.evidence if e.key == key)


def test_shared_nic_on_one_host_with_the_others_quiet() -> None:
    incidents, findings, rejected = run(se.cluster() + se.shared_nic())
    assert reported(findings) == [(SHARED, "hv01")]
    assert findings[0].confidence >= 0.8
    assert findings[0].incident == incidents[0].id
    assert all(f.confidence < 0.5 for f in rejected)
    assert evidence(findings[0], "other-nodes-keep-dc").status == "absent"
    assert evidence(findings[0], "link-down").rows  # cites the link-down rows


def test_a_missing_system_log_on_another_node_lowers_confidence_and_says_unknown() -> None:
    full = run(se.cluster() + se.shared_nic())[1][0]
    partial = run(se.cluster(without=("HV03",)) + se.shared_nic())[1][0]
    assert partial.cause == SHARED and partial.confidence < full.confidence
    item = evidence(partial, "other-nodes-keep-dc")
    assert (item.status, item.contribution, item.note_key) == ("unknown", 0.0, "evidence.unknown_missing_log")


def test_a_log_that_starts_after_the_window_cannot_vouch() -> None:
    rows = se.cluster(without=("HV03",)) + se.quiet_log("HV03", start=200) + se.shared_nic()
    finding = run(rows)[1][0]
    assert evidence(finding, "other-nodes-keep-dc").status == "unknown"


def test_a_node_known_only_from_a_cluster_event_cannot_vouch() -> None:
    rows = se.cluster(("HV01", "HV02")) + se.shared_nic()
    rows.append(se.fc("HV02", 6, 1126, "HV04 - Ethernet", "HV04", "Cluster Network 1"))
    finding = run(rows)[1][0]
    assert evidence(finding, "other-nodes-keep-dc").status == "unknown"


def test_caller_coverage_overrides_the_frame() -> None:
    rows = se.cluster() + se.shared_nic()
    table = se.frame(rows)
    spans = Coverage.from_frame(table).spans
    coverage = Coverage({k: v for k, v in spans.items() if k[0] != "hv02"})
    signals = match(table, RULES)
    findings, _ = diagnose(table, correlate(table, signals, RULES), signals, RULES, coverage=coverage)
    assert evidence(findings[0], "other-nodes-keep-dc").status == "unknown"


# --- issue 11 case 6: a log with lost records, or without a channel, vouches only for what it holds ------


def _with_coverage(rows: list[dict], **coverage: object) -> object:
    table = se.frame(rows)
    signals = match(table, RULES)
    spans = Coverage.from_frame(table, RULES.settings.coverage_slack_s, **coverage)
    findings, rejected = diagnose(table, correlate(table, signals, RULES), signals, RULES, coverage=spans)
    return next(f for f in findings + rejected if f.cause == SHARED)


def test_a_log_with_records_lost_around_the_failure_cannot_vouch() -> None:
    """HV02's System log spans the failure, but records were lost between 30 s before and 2 min after
    HV01's errors: its 5719 may be among them. It used to vouch 'absent' (and confirm the cause)."""
    rows = se.cluster() + se.shared_nic()
    clean = _with_coverage(rows)
    assert evidence(clean, "other-node-lost-dc").status == "absent" and clean.certainty == "confirmed"
    holed = _with_coverage(rows, holes={("hv02", "System"): ((se.at(-30), se.at(120)),)})
    item = evidence(holed, "other-node-lost-dc")
    assert item.status == "unknown" and item.unknown_logs == (("hv02", "System"),)
    assert holed.confidence_range[0] < RULES.settings.threshold <= clean.confidence_range[0]
    assert holed.certainty == "unconfirmed"
    # a hole elsewhere in the log, or open only before the window, changes nothing
    far = _with_coverage(
        rows, holes={("hv02", "System"): ((se.at(-9000), se.at(-8000)), (None, se.at(-7000)))}
    )
    assert evidence(far, "other-node-lost-dc").status == "absent"
    assert far.confidence_range == clean.confidence_range


def test_a_log_without_a_channel_vouches_only_for_the_channel_its_providers_write_to() -> None:
    """HV02's logs came as a channel-less export (an Event Viewer CSV whose name gives no channel). It
    used to vouch for every channel; now only for the logsource whose providers it holds."""

    def bare(rows: list[dict], host: str) -> list[dict]:
        return [{**r, "channel": ""} if r["host_key"] == host else r for r in rows]

    base = se.cluster() + se.shared_nic()
    system_like = _with_coverage(bare(base, "hv02"))  # holds Service Control Manager, NETLOGON... rows
    assert evidence(system_like, "other-node-lost-dc").status == "absent"
    ha_only = [r for r in base if not (r["host_key"] == "hv02" and r["channel"] == "System")]
    table = se.frame(bare(ha_only, "hv02"))  # HV02: only its Hyper-V High Availability log, unnamed
    assert Coverage.from_frame(table).unnamed["hv02"] == {"microsoft-windows-hyper-v-high-availability"}
    unnamed = _with_coverage(bare(ha_only, "hv02"))
    assert evidence(unnamed, "other-node-lost-dc").status == "unknown"


def test_dc_unreachable_everywhere_is_not_shared_nic() -> None:
    rows = se.cluster() + [se.netlogon_5719(h, 40 + 9 * n) for n, h in enumerate(("HV01", "HV02", "HV03"))]
    rows += [se.fc_1228("HV01", 80, "1311"), se.gp_1129("HV02", 200)]
    _incidents, findings, rejected = run(rows)
    assert sorted(reported(findings)) == [
        ("dc-unreachable-cluster-wide", h) for h in ("hv01", "hv02", "hv03")
    ]
    shared = [f for f in rejected if f.cause == SHARED]
    assert shared and all(f.confidence < 0.5 for f in shared)
    assert evidence(shared[0], "other-node-lost-dc").contribution < 0
    assert evidence(shared[0], "link-down").status == "absent"


def test_shared_nic_with_another_node_losing_its_dc_is_refuted() -> None:
    rows = se.cluster() + se.shared_nic() + [se.netlogon_5719("HV02", 50)]
    _i, findings, rejected = run(rows)
    assert SHARED not in {f.cause for f in findings}
    assert evidence(next(f for f in rejected if f.cause == SHARED), "other-node-lost-dc").contribution < 0


def test_kerberos_delegation_missing() -> None:
    _i, findings, _r = run(se.cluster() + [se.ha("HV01", 0, 21300), se.ha_21502("HV01", 12, "0x8009030E")])
    assert reported(findings) == [("kerberos-delegation-missing", "hv01")]


def test_secure_channel_broken() -> None:
    rows = se.cluster() + [se.netlogon_5719("HV02", 10, "6D0000C0"), se.netlogon_3210("HV02", 12)]
    _i, findings, _r = run(rows)
    assert reported(findings) == [("secure-channel-broken", "hv02")]


def test_cluster_name_object_disabled() -> None:
    rows = se.cluster() + [
        se.fc_1228("HV01", 10, "1326"),
        se.fc("HV01", 11, 1069, "Cluster Name", "Cluster Group", "Network Name"),
        se.fc("HV01", 12, 1206, "Cluster Name", "CONTOSO", "5", "CONTOSO\\CLUS01$"),
        se.fc("HV01", 13, 1205, "Cluster Group"),
    ]
    _i, findings, rejected = run(rows)
    assert reported(findings) == [("cno-disabled-or-deleted", "hv01")]
    assert all(f.confidence < 0.5 for f in rejected)


def test_link_down_then_successful_migration_gives_nothing() -> None:
    rows = se.cluster() + [
        se.link_down("HV01", 0),
        se.fc("HV02", 4, 1126, "HV01 - Ethernet 2", "HV01", "n"),
        se.ha("HV01", 6, 21300),
        se.ha("HV01", 40, 21301),
        se.link_up("HV01", 300),
    ]
    incidents, findings, rejected = run(rows)
    assert (incidents, findings, rejected) == ([], [], [])


def test_noise_only_gives_no_incident() -> None:
    assert run(se.cluster()) == ([], [], [])


def test_triad_without_link_down_is_reported_with_less_confidence() -> None:
    """Not every NIC driver logs a link-down we know: the host still lost its DCs alone, so the cause is
    named, but below the confidence of a cited cable pull, and the missing link-down is shown."""
    rows = se.cluster() + [se.ha_21502("HV01", 0), se.netlogon_5719("HV01", 20), se.fc_1228("HV01", 40)]
    _i, findings, _rejected = run(rows)
    assert reported(findings) == [(SHARED, "hv01")]
    shared = findings[0]
    assert 0.5 <= shared.confidence < 0.8
    assert evidence(shared, "link-down").status == "absent"
    with_link = run(se.cluster() + se.shared_nic())[1][0]
    assert with_link.confidence - shared.confidence >= 0.25


def test_an_auth_failure_without_lost_dc_is_an_unknown_auth_failure_not_a_guess() -> None:
    rows = se.cluster() + [se.ha_21502("HV01", 0), se.fc_1228("HV01", 40)]
    _i, findings, rejected = run(rows)
    assert reported(findings) == [("unknown-auth-failure", "hv01")]
    shared = next(f for f in rejected if f.cause == SHARED)
    assert evidence(shared, "no-logon-servers").note_key == "evidence.required_not_met"


def test_a_link_flap_and_5719_at_boot_is_not_a_pulled_cable() -> None:
    rows = se.cluster() + [
        se.row("HV01", -20, "EventLog", 6005, level=4),
        se.link_down("HV01", -5),
        se.link_up("HV01", -2),
        se.netlogon_5719("HV01", 10),
    ]
    _i, findings, rejected = run(rows)
    assert reported(findings) == [("boot-time-dc-not-ready", "hv01")]  # benign: start-up noise, no cause
    shared = next(f for f in rejected if f.cause == SHARED)
    assert evidence(shared, "host-starting").contribution == -0.5


def test_the_fallback_is_dropped_where_a_known_cause_explains() -> None:
    _i, findings, rejected = run(se.cluster() + se.shared_nic())
    assert "unknown-auth-failure" not in {f.cause for f in findings + rejected}


def test_twice_gives_one_finding_per_incident() -> None:
    rows = se.cluster() + se.shared_nic("HV01", 0) + se.shared_nic("HV02", 5000)
    incidents, findings, _r = run(rows)
    assert [(f.incident, f.cause, f.host) for f in findings] == [
        ("I1", SHARED, "hv01"),
        ("I2", SHARED, "hv02"),
    ]
    assert len(incidents) == 2


def test_another_nodes_clock_offset_within_skew_still_counts() -> None:
    """HV02's 5719 is 660 s after HV01's anchors by HV02's clock: outside the 600 s window, inside it
    once the 120 s skew tolerance is allowed for, so it still refutes the shared-NIC cause."""
    rows = se.cluster() + se.shared_nic() + [se.netlogon_5719("HV02", 79 + 660)]
    table = se.frame(rows)
    signals = match(table, RULES)
    incidents = correlate(table, signals, RULES)
    tolerant = diagnose(table, incidents, signals, RULES)
    strict = diagnose(table, incidents, signals, RULES, skew_s=0)
    assert SHARED not in {f.cause for f in tolerant[0]}
    assert SHARED in {f.cause for f in strict[0]}


def test_a_required_item_that_is_unknown_keeps_the_finding_out() -> None:
    """HV01's System log is missing: its HA log alone shows 21502; its 5719 cannot be seen."""
    rows = se.cluster(without=("HV01",)) + [r for r in se.shared_nic() if r["channel"] != "System"]
    _i, findings, rejected = run(rows, threshold=0.0)
    shared = next(f for f in rejected if f.cause == SHARED)
    assert evidence(shared, "no-logon-servers").status == "unknown"
    assert SHARED not in {f.cause for f in findings}


def test_threshold_moves_findings_to_rejected() -> None:
    _i, findings, rejected = run(se.cluster() + se.shared_nic(), threshold=0.99)
    assert findings == [] and SHARED in {f.cause for f in rejected}


@pytest.mark.parametrize(
    "build", [lambda: se.cluster() + se.shared_nic(), lambda: se.cluster(without=("HV02",)) + se.shared_nic()]
)
def test_confidence_is_prior_plus_contributions(build) -> None:
    _i, findings, rejected = run(build())
    for finding in findings + rejected:
        prior = RULES.causes[finding.cause].prior
        total = prior + sum(e.contribution for e in finding.evidence)
        assert finding.confidence == pytest.approx(min(1.0, max(0.0, total)))
        keys = [e.key for e in finding.evidence if not e.key.startswith("anchor:")]
        assert keys == [spec.key for spec in RULES.causes[finding.cause].evidence]


# --- forge bundles: table -> match -> correlate -> diagnose against each scenario's ground truth ------


SKEW_SLACK = timedelta(minutes=5)


def _diagnose_bundle(bundle: Path, work: Path) -> dict[str, object]:
    ledger = Ledger()
    sources = discover([bundle], ledger, work_dir=work)
    entries = {entry.path: entry for entry in ledger.entries}
    records = [record for source in sources for record in parse(source, entries[source.display])]
    table = to_frame(records, ledger)
    signals = match(table, RULES)
    offsets = clock.offsets_s(clock.estimate(table, signals, clock.clock_settings(RULES.settings.clock)))
    incidents = correlate(table, signals, RULES, offsets=offsets)  # nodes on one clock, as analyze does
    findings, rejected = diagnose(table, incidents, signals, RULES)
    return {"frame": table, "incidents": incidents, "findings": findings, "rejected": rejected}


@pytest.fixture(scope="module")
def forged(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, object]]:
    """Every scenario forged fresh (not the committed fixtures) and diagnosed once."""
    out = tmp_path_factory.mktemp("bundles")
    results = {}
    for scenario_id in list_scenarios():
        forge_bundle(scenario_id, out)
        results[scenario_id] = _diagnose_bundle(out / scenario_id, tmp_path_factory.mktemp("work"))
    return results


def _short(host: str) -> str:
    return host.split(".")[0].lower()


@pytest.mark.parametrize("scenario_id", list_scenarios())
def test_forged_scenario_matches_its_truth(forged: dict, scenario_id: str) -> None:
    result = forged[scenario_id]
    expected = [t for t in truth(load_scenario(scenario_id)) if t["cause"] != "none"]
    incidents = {i.id: i for i in result["incidents"]}
    explained = set()
    for want in expected:
        mine = [f for f in result["findings"] if f.cause == want["cause"] and f.host == _short(want["host"])]
        assert len(mine) == 1, (want["cause"], want["host"], [(f.cause, f.host) for f in result["findings"]])
        finding = mine[0]
        assert finding.confidence >= (0.8 if want["cause"] == SHARED else 0.5), finding
        incident = incidents[finding.incident]
        assert incident.start - SKEW_SLACK <= want["start"] <= incident.end + SKEW_SLACK, (incident, want)
        explained.add(finding.incident)
    for finding in result["findings"]:  # nothing else above the threshold, anywhere
        assert finding.cause in {want["cause"] for want in expected}, finding
        assert finding.incident in explained, finding
    assert len(result["incidents"]) == len(expected)


def test_forged_cluster_wide_outage_names_every_node_and_rejects_shared_nic(forged: dict) -> None:
    result = forged["dc-unreachable-cluster-wide"]
    nodes = {n.name.lower() for n in load_scenario("dc-unreachable-cluster-wide").nodes}
    assert {f.host for f in result["findings"]} == nodes
    shared = [f for f in result["rejected"] if f.cause == SHARED]
    assert shared and max(f.confidence for f in shared) < 0.5


@pytest.mark.parametrize("cause_id", sorted(RULES.causes))
def test_each_cause_fires_and_stays_quiet_in_its_example_scenarios(forged: dict, cause_id: str) -> None:
    examples = RULES.causes[cause_id].examples
    for scenario_id in examples.get("fires", ()):
        assert cause_id in {f.cause for f in forged[scenario_id]["findings"]}, scenario_id
    for scenario_id in examples.get("quiet", ()):
        assert cause_id not in {f.cause for f in forged[scenario_id]["findings"]}, scenario_id


def test_forged_findings_cite_rows_that_exist(forged: dict) -> None:
    for result in forged.values():
        table = result["frame"]
        for finding in result["findings"]:
            cited = [row for item in finding.evidence for row in item.rows]
            assert cited and set(cited) <= set(table.index)
            assert all(e.status == "present" for e in finding.evidence if e.role == "required")


# --- issue 11: evidence per episode, independent of incident grouping; nodes from the cluster ---------


def _shared(findings: list) -> list:
    return [f for f in findings if f.cause == SHARED]


def test_a_link_down_hours_into_a_failing_dc_is_not_its_cause() -> None:
    """HV01's DC drops every 20 minutes for 10 hours; one link-down 5 hours in cannot explain a failure
    that began 5 hours before it (it used to count as 'before the failure': 0.7)."""
    rows = se.cluster(start=-3600, end=40000) + se.dc_flap("HV01", 0, 36000) + [se.link_down("HV01", 18100)]
    _i, findings, rejected = run(rows)
    assert SHARED not in {f.cause for f in findings}
    shared = _shared(rejected)
    assert len(shared) == 1 and shared[0].onset == se.at(0)
    assert evidence(shared[0], "link-down").status == "absent"


def test_a_link_down_before_one_of_many_separate_failures_is_not_their_cause() -> None:
    """Every 40 minutes (separate episodes): the one right after the link-down has a link-down before its
    onset, but the same host had lost its DC in the hours before, so the cable did not start it."""
    rows = se.cluster(start=-3600, end=40000) + se.dc_flap("HV01", 0, 36000, 2400)
    rows.append(se.link_down("HV01", 16800 - 30))
    _i, findings, rejected = run(rows)
    assert SHARED not in {f.cause for f in findings}
    episode = next(f for f in rejected if f.cause == SHARED and f.onset == se.at(16800))
    assert evidence(episode, "link-down").status == "present"
    assert evidence(episode, "dc-lost-earlier").contribution == -0.4


def test_a_cable_pull_in_a_long_quiet_window_is_still_found() -> None:
    rows = se.cluster(start=-3600, end=40000) + se.shared_nic("HV01", 18000)
    _i, findings, _r = run(rows)
    assert reported(findings) == [(SHARED, "hv01")]
    assert findings[0].confidence >= 0.9 and findings[0].certainty == "confirmed"


def _verdicts(findings: list) -> list[tuple]:
    return sorted(
        (
            f.cause,
            f.host,
            f.onset,
            f.confidence,
            f.confidence_range,
            tuple((e.key, e.status, e.contribution, e.rows) for e in f.evidence),
        )
        for f in findings
    )


def test_the_verdict_does_not_depend_on_the_incident_gap() -> None:
    """HV02 also lost its DC 500 s after HV01's errors: it refutes the shared NIC whatever --gap says
    (with --gap 300 it fell into another incident and the cause was reported at 0.95)."""
    rows = se.cluster() + se.shared_nic() + [se.netlogon_5719("HV02", 41 + 500)]
    table = se.frame(rows)
    signals = match(table, RULES)
    results = []
    for gap in (60, 300, 1800, 7200):
        incidents = correlate(table, signals, RULES, gap_s=gap, lookback_s=gap, lookahead_s=gap)
        findings, rejected = diagnose(table, incidents, signals, RULES)
        assert SHARED not in {f.cause for f in findings}, gap
        results.append((_verdicts(findings), _verdicts(rejected)))
    assert all(result == results[0] for result in results)


def test_evidence_outside_every_incident_still_counts() -> None:
    """Rows beyond the incident's lookback are still looked at: the boot 550 s before the 5719 is outside
    a 60 s lookback but within the cause's 600 s window."""
    rows = se.cluster() + [
        se.row("HV01", -540, "EventLog", 6005, level=4),
        se.link_down("HV01", -5),
        se.netlogon_5719("HV01", 10),
    ]
    table = se.frame(rows)
    signals = match(table, RULES)
    findings, rejected = diagnose(table, correlate(table, signals, RULES, lookback_s=60), signals, RULES)
    assert SHARED not in {f.cause for f in findings}
    assert evidence(_shared(rejected)[0], "host-starting").status == "present"


CLUSTER_WIDE = se.cluster() + se.shared_nic() + [se.netlogon_5719("HV02", 50)]
NAMES_HV02 = [se.role_move("HV03", -1800, "HV02", "HV03")]  # HV03's log names HV02 as a node


def _without(rows: list[dict], host: str) -> list[dict]:
    return [r for r in rows if r["host_key"] != host]


def test_removing_the_logs_of_a_node_the_cluster_names_never_confirms_the_cause() -> None:
    """HV02 also lost its DC. Without HV02's logs the shared NIC used to be reported at 0.975; HV02 is
    still a node (HV03's cluster events name it), so its missing log is unknown, counted against the
    cause at the low end, and the finding reads as unconfirmed."""
    full = _shared(run(CLUSTER_WIDE + NAMES_HV02)[2])[0]
    assert full.confidence_range == (full.confidence, full.confidence) == (0.225, 0.225)
    _i, findings, rejected = run(_without(CLUSTER_WIDE + NAMES_HV02, "hv02"))
    partial = _shared(findings + rejected)[0]
    assert partial.confidence_range[0] <= full.confidence_range[0]
    assert partial.confidence_range[0] < RULES.settings.threshold
    assert partial.certainty != "confirmed"
    item = evidence(partial, "other-node-lost-dc")
    assert item.status == "unknown" and ("hv02", "System") in item.unknown_logs
    assert item.contribution_range == (-0.6, 0.0)


def test_nodes_given_by_the_engineer_cannot_vouch_without_logs() -> None:
    rows = _without(CLUSTER_WIDE, "hv02")
    assert _shared(run(rows)[1])[0].certainty == "confirmed"  # nothing says HV02 exists: as before
    _i, findings, rejected = run(rows, nodes=["hv01", "hv02", "hv03"])
    partial = _shared(findings + rejected)[0]
    assert partial.confidence_range[0] < RULES.settings.threshold and partial.certainty != "confirmed"


def test_a_complete_bundle_gives_a_point_range_and_a_confirmed_finding() -> None:
    finding = run(se.cluster() + se.shared_nic())[1][0]
    assert finding.confidence_range == (finding.confidence, finding.confidence)
    assert finding.certainty == "confirmed"
    assert all(not e.unknown_logs for e in finding.evidence)


def test_a_missing_log_widens_the_range_around_the_confidence() -> None:
    finding = run(se.cluster(without=("HV03",)) + se.shared_nic())[1][0]
    low, high = finding.confidence_range
    assert low < finding.confidence <= high
    assert low == pytest.approx(finding.confidence - 0.6)  # HV03 might have lost its DC too
    assert high == pytest.approx(min(1.0, finding.confidence + 0.15))  # ... or kept it
    assert finding.certainty == "unconfirmed"
    assert ("hv03", "System") in evidence(finding, "other-node-lost-dc").unknown_logs


def test_a_fallback_is_kept_for_an_episode_no_other_cause_explains() -> None:
    """The shared NIC explains HV01's first failure; a 21502 with an unknown code two hours later is a
    separate episode, which the fallback still reports."""
    rows = se.cluster(end=14400) + se.shared_nic() + [se.ha_21502("HV01", 7200, "0x80090303")]
    _i, findings, _r = run(rows)
    assert [(f.cause, f.host) for f in findings] == [(SHARED, "hv01"), ("unknown-auth-failure", "hv01")]


def test_an_export_without_payload_names_the_cause_unconfirmed_with_the_payload_evidence_unknown() -> None:
    """Issue 16: HV01's logs came as Event Viewer CSV (provider, event id and time only). The 5719,
    21502 and 1228 may be the ones the cause looks for, or their look-alikes: the cause is named,
    unconfirmed, and everything only a payload could decide is unknown ('payload not checked')."""
    from evtxcorr.ruleset import match_unknown

    def bare(row: dict) -> dict:
        if row["host_key"] != "hv01":
            return row
        return {**row, "data": (), "data_names": (), "binary": "", "codes": (), "payload_known": False}

    table = se.frame([bare(r) for r in se.cluster() + se.shared_nic()])
    signals, maybe = match_unknown(table, RULES)
    every = {row: signals.get(row, ()) + maybe.get(row, ()) for row in {*signals, *maybe}}
    incidents = correlate(table, every, RULES)
    findings, _ = diagnose(table, incidents, signals, RULES, maybe=maybe)
    assert reported(findings) == [(SHARED, "hv01")]
    finding = findings[0]
    assert finding.certainty == "unconfirmed" and finding.confidence_range[0] < 0.5
    for key in ("no-logon-servers", "migration-no-authority", "delegation-error", "secure-channel-error"):
        item = evidence(finding, key)
        assert (item.status, item.contribution, item.note_key) == (
            "unknown",
            0.0,
            "evidence.payload_not_checked",
        )
        assert item.rows and item.unchecked_hosts == ("hv01",)
    assert evidence(finding, "link-down").status == "present"  # e1iexpress 27 needs no payload
    assert evidence(finding, "other-nodes-keep-dc").status == "absent"  # the other nodes' logs vouch
    # without the possible matches, the same table gives nothing: the CSV rows could not anchor
    assert diagnose(table, correlate(table, signals, RULES), signals, RULES)[0] == []


def test_the_signal_index_holds_each_detections_hits_per_host_in_time_order() -> None:
    import random

    import numpy as np
    import pandas as pd

    from evtxcorr.diagnose.index import SignalIndex

    generator = random.Random(3)
    times = [
        pd.Timestamp("2026-01-01", tz="UTC") + pd.Timedelta(seconds=generator.randint(0, 50))
        for _ in range(300)
    ]
    frame = pd.DataFrame(
        {"time": times, "host_key": [generator.choice(["hv01", "hv02", "hv03"]) for _ in range(300)]}
    )
    frame.loc[7, "time"] = pd.NaT  # no time: left out
    signals = {
        row: tuple(generator.sample(["a", "b", "c"], generator.randint(1, 3)))
        for row in range(300)
        if generator.random() < 0.7
    }
    index = SignalIndex.build(frame, signals, hosts=["hv01", "hv02"])
    expected: dict[tuple[str, str], list[tuple[int, int]]] = {}
    for row, names in signals.items():
        if row == 7 or frame.at[row, "host_key"] == "hv03":
            continue
        ns = frame.at[row, "time"].value
        for name in names:
            expected.setdefault((name, frame.at[row, "host_key"]), []).append((ns, row))
    assert sorted(index.hits) == sorted(expected)
    for key, hits in index.hits.items():
        assert list(zip(hits.ns.tolist(), hits.rows.tolist(), strict=True)) == sorted(expected[key])
        assert hits.ns.dtype == np.int64 and hits.rows.dtype == np.int64
    assert SignalIndex.build(frame, signals, hosts=["hv09"]).hits == {}
