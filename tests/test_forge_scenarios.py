"""The scenario layer of the forge: scenario YAML -> ForgedEvents per host and channel -> bundles."""

from __future__ import annotations

import shutil
import zipfile
from collections import Counter
from datetime import timedelta
from pathlib import Path

import evtx
import pytest
from evtx_readback import expected_records, read_rust, strip

from evtxcorr.forge import (
    CAUSES,
    CHANNELS,
    ScenarioError,
    expand,
    forge_bundle,
    list_scenarios,
    load_scenario,
    truth,
)
from evtxcorr.forge.catalog import load_catalog
from evtxcorr.forge.events import Classic, EventData, UserData, ValueType
from evtxcorr.forge.scenario import SCENARIO_DIR

SCENARIOS = (
    "shared-nic-sole-dc-path",
    "dc-unreachable-cluster-wide",
    "kerberos-delegation-missing",
    "secure-channel-broken",
    "cno-disabled-or-deleted",
    "link-down-second-dc-path",
    "noise-only",
    "shared-nic-twice",
    "shared-nic-link-restored",
    "boot-time-dc-not-ready",
    "boot-time-cluster-name-failed",
    "kerberos-clock-skew",
)
SYSTEM = "System"
HA = "Microsoft-Windows-Hyper-V-High-Availability-Admin"


@pytest.fixture(scope="module")
def expanded() -> dict[str, dict]:
    """Every shipped scenario expanded once with its own seed."""
    return {sid: expand(sid) for sid in SCENARIOS}


def _events(expansion: dict, provider: str, event_id: int) -> list:
    return [
        e
        for events in expansion.values()
        for e in events
        if e.provider == provider and e.event_id == event_id
    ]


def _hosts(events: list) -> set[str]:
    return {e.computer for e in events}


def _binary(event) -> str:
    return (event.payload.binary or b"").hex().upper()


def _text(event) -> str:
    return " ".join(str(v.value) for _, v in event.payload.fields)


# --- loading and expansion -----------------------------------------------------------------------


def test_the_shipped_scenarios_are_exactly_these() -> None:
    assert list_scenarios() == sorted(SCENARIOS)


@pytest.mark.parametrize("scenario_id", SCENARIOS)
def test_every_scenario_expands_into_every_host_and_channel(scenario_id: str, expanded: dict) -> None:
    scenario = load_scenario(scenario_id)
    expansion = expanded[scenario_id]
    assert set(expansion) == {(n.fqdn, ch) for n in scenario.nodes for ch in CHANNELS}
    for (fqdn, channel), events in expansion.items():
        assert all(e.computer == fqdn and e.channel == channel for e in events)
        assert [e.time for e in events] == sorted(e.time for e in events)
        ids = [e.record_id for e in events]
        assert ids == list(range(ids[0], ids[0] + len(ids))) if ids else True
        assert all(e.time.utcoffset() == timedelta(0) for e in events)
    for node in scenario.nodes:
        system = expansion[(node.fqdn, SYSTEM)]
        assert 100 <= len(system) <= 3000, (node.name, len(system))
        assert len({e.provider for e in system}) >= 5
    providers = {e.provider for events in expansion.values() for e in events}
    assert len(providers) >= 10


def test_node_counts_differ_across_scenarios() -> None:
    counts = {len(load_scenario(s).nodes) for s in SCENARIOS}
    assert {2, 3, 4, 8} <= counts


def test_clock_offsets_include_tens_of_seconds_and_a_negative_one() -> None:
    for sid in SCENARIOS:
        offsets = [n.clock_offset for n in load_scenario(sid).nodes]
        assert any(o < 0 for o in offsets) and any(abs(o) >= 10 for o in offsets), sid


def test_background_comes_from_dozens_of_providers(expanded: dict) -> None:
    providers = {e.provider for x in expanded.values() for events in x.values() for e in events}
    assert len(providers) >= 16
    total = sum(len(events) for x in expanded.values() for events in x.values())
    assert total > 5000


def test_bundles_log_dozens_of_providers(expanded: dict) -> None:
    """The issue asks for background noise 'from dozens of providers', as a real cluster node logs."""
    per_bundle = {
        sid: {e.provider for events in expansion.values() for e in events}
        for sid, expansion in expanded.items()
    }
    assert min(len(p) for p in per_bundle.values()) >= 20, {sid: len(p) for sid, p in per_bundle.items()}
    assert len(per_bundle["shared-nic-sole-dc-path"]) >= 26
    assert len(set().union(*per_bundle.values())) >= 30


def test_added_background_shapes_follow_their_real_records(expanded: dict) -> None:
    expansion = expanded["shared-nic-sole-dc-path"]
    for load in _events(expansion, "Microsoft-Windows-FilterManager", 6):  # sample: version 1, 9 fields
        values = dict(load.payload.fields)
        assert load.version == 1 and values["DeviceTime"].type == ValueType.FILETIME
        assert values["DeviceNameLength"].value == len(values["DeviceName"].value)
        assert values["ExtraInfoLength"].value == len(values["ExtraInfoString"].value)
    for failure in _events(expansion, "Microsoft-Windows-Kernel-PnP", 219):
        values = dict(failure.payload.fields)
        assert values["DriverNameLength"].value == len(values["DriverName"].value)
        assert values["FailureNameLength"].value == len(values["FailureName"].value)
    (http,) = _events(expansion, "Microsoft-Windows-HttpEvent", 15007)[:1]
    assert http.event_source_name == "HTTP" and http.qualifiers == 16384 and http.user_sid is None
    (termdd,) = _events(expansion, "TermDD", 56)[:1]
    assert termdd.is_classic and termdd.qualifiers == 49162 and len(termdd.payload.binary) == 44
    (install,) = _events(expansion, "Microsoft-Windows-UserPnp", 20001)[:1]
    assert isinstance(install.payload, UserData) and install.payload.root == "InstallDeviceID"
    assert [v.type for _, v in install.payload.fields][5:8] == [ValueType.BOOL] * 3
    for pid_owner in _events(expansion, "Microsoft-Windows-UserModePowerService", 12):
        assert dict(pid_owner.payload.fields)["ProcessPid"].value % 4 == 0


def test_same_seed_same_events_other_seed_other_times() -> None:
    first, again = expand("kerberos-delegation-missing"), expand("kerberos-delegation-missing")
    assert first == again
    other = expand("kerberos-delegation-missing", seed=7)
    assert other != first
    t_default = truth("kerberos-delegation-missing")[0]["start"]
    t_other = truth("kerberos-delegation-missing", seed=7)[0]["start"]
    start = load_scenario("kerberos-delegation-missing").start
    assert t_default != t_other
    assert all(start + timedelta(hours=2) <= t <= start + timedelta(hours=4) for t in (t_default, t_other))


def test_scale_multiplies_noise_but_not_the_incident() -> None:
    base, dense = expand("shared-nic-link-restored"), expand("shared-nic-link-restored", scale=3)
    fqdn = load_scenario("shared-nic-link-restored").nodes[1].fqdn
    assert len(dense[(fqdn, SYSTEM)]) > 2 * len(base[(fqdn, SYSTEM)])
    assert [e.time for e in _events(base, "NETLOGON", 5719)] == [
        e.time for e in _events(dense, "NETLOGON", 5719)
    ]


# --- the positive case ---------------------------------------------------------------------------


def test_shared_nic_errors_only_on_the_truth_host_inside_its_window(expanded: dict) -> None:
    expansion = expanded["shared-nic-sole-dc-path"]
    (incident,) = truth("shared-nic-sole-dc-path")
    assert incident["cause"] == "shared-nic-sole-dc-path"
    assert incident["host"] == "HV01.contoso.local"
    offset = timedelta(seconds=load_scenario("shared-nic-sole-dc-path").node("HV01").clock_offset)
    low, high = incident["start"] + offset, incident["end"] + offset
    key_events = {
        "netlogon-5719": _events(expansion, "NETLOGON", 5719),
        "fc-1228": _events(expansion, "Microsoft-Windows-FailoverClustering", 1228),
        "ha-21502": _events(expansion, "Microsoft-Windows-Hyper-V-High-Availability", 21502),
        "link-down": _events(expansion, "e1iexpress", 27),
    }
    for name, events in key_events.items():
        assert len(events) == 1, name
        assert _hosts(events) == {incident["host"]}, name
        assert low <= events[0].time <= high, name
    # events.md §13: link-down first, then the three errors within minutes
    t_down = key_events["link-down"][0].time
    for name in ("netlogon-5719", "fc-1228", "ha-21502"):
        assert timedelta(0) < key_events[name][0].time - t_down <= timedelta(minutes=5), name
    assert _binary(key_events["netlogon-5719"][0]) == "5E0000C0"
    assert _text(key_events["ha-21502"][0]).count("0x80090311") == 2


def test_other_nodes_keep_their_dc_session_while_the_source_is_cut_off(expanded: dict) -> None:
    expansion = expanded["shared-nic-sole-dc-path"]
    (incident,) = truth("shared-nic-sole-dc-path")
    times = {e["label"]: e["time"] for e in incident["events"]}
    down, up = times["link-down"], times["link-up"]
    scenario = load_scenario("shared-nic-sole-dc-path")
    refreshes = Counter()
    for node in scenario.nodes:
        offset = timedelta(seconds=node.clock_offset)
        gp = [
            e
            for e in expansion[(node.fqdn, SYSTEM)]
            if e.event_id in (1500, 1502) and e.provider.endswith("GroupPolicy")
        ]
        refreshes[node.name] = sum(down <= e.time - offset <= up for e in gp)
    assert refreshes["HV01"] == 0
    assert sum(refreshes[n] for n in ("HV02", "HV03", "HV04")) >= 1


def test_shared_nic_twice_hits_two_nodes_days_apart(expanded: dict) -> None:
    incidents = truth("shared-nic-twice")
    assert [i["cause"] for i in incidents] == ["shared-nic-sole-dc-path"] * 2
    assert incidents[0]["host"] != incidents[1]["host"]
    assert incidents[1]["start"] - incidents[0]["end"] > timedelta(days=1)
    netlogon = _events(expanded["shared-nic-twice"], "NETLOGON", 5719)
    assert sorted(e.computer for e in netlogon) == sorted(i["host"] for i in incidents)


def test_link_restored_then_the_retried_migration_succeeds(expanded: dict) -> None:
    (incident,) = truth("shared-nic-link-restored")
    times = {e["label"]: e["time"] for e in incident["events"]}
    assert times["link-up"] < times["retry"] < times["retry-done"]
    done = _events(expanded["shared-nic-link-restored"], "Microsoft-Windows-Hyper-V-VMMS", 20415)
    assert incident["host"] in _hosts(done)
    assert incident["end"] >= times["retry-done"]


# --- look-alikes -----------------------------------------------------------------------------------


def _no_link_down(expansion: dict) -> bool:
    return not _events(expansion, "e1iexpress", 27) and not _events(expansion, "Tcpip", 4202)


def test_dc_unreachable_logs_5719_on_every_node_within_a_minute(expanded: dict) -> None:
    expansion = expanded["dc-unreachable-cluster-wide"]
    scenario = load_scenario("dc-unreachable-cluster-wide")
    netlogon = _events(expansion, "NETLOGON", 5719)
    assert _hosts(netlogon) == {n.fqdn for n in scenario.nodes}
    true_times = [e["time"] for e in truth(scenario)[0]["events"] if e["kind"] == "netlogon-5719"]
    assert max(true_times) - min(true_times) <= timedelta(minutes=1)
    assert {_binary(e) for e in netlogon} == {"5E0000C0"}
    assert _no_link_down(expansion)
    (cno,) = _events(expansion, "Microsoft-Windows-FailoverClustering", 1228)
    assert _text(cno).endswith("1311")
    assert "0x80090311" in _text(_events(expansion, "Microsoft-Windows-Hyper-V-High-Availability", 21502)[0])


def test_kerberos_delegation_missing_has_0x8009030e_and_a_reachable_dc(expanded: dict) -> None:
    expansion = expanded["kerberos-delegation-missing"]
    failures = _events(expansion, "Microsoft-Windows-Hyper-V-High-Availability", 21502)
    assert failures and all("0x8009030E" in _text(e) and "0x80090311" not in _text(e) for e in failures)
    assert all("no suitable credentials available" in _text(e) for e in failures)
    assert not _events(expansion, "NETLOGON", 5719)
    assert _no_link_down(expansion)
    assert _events(expansion, "Microsoft-Windows-GroupPolicy", 1500)


def test_secure_channel_broken_is_one_host_with_a_logon_failure_status(expanded: dict) -> None:
    expansion = expanded["secure-channel-broken"]
    (incident,) = truth("secure-channel-broken")
    assert _hosts(_events(expansion, "NETLOGON", 3210)) == {incident["host"]}
    netlogon = _events(expansion, "NETLOGON", 5719)
    assert _hosts(netlogon) == {incident["host"]}
    assert {_binary(e) for e in netlogon} <= {"6D0000C0", "220000C0"}
    assert _no_link_down(expansion)


def test_cno_deleted_logs_1228_with_1326_and_no_5719(expanded: dict) -> None:
    expansion = expanded["cno-disabled-or-deleted"]
    (incident,) = truth("cno-disabled-or-deleted")
    cno = _events(expansion, "Microsoft-Windows-FailoverClustering", 1228)
    assert cno and _hosts(cno) == {incident["host"]}
    assert all(e.payload.fields[2][1].value == "1326" for e in cno)
    for event_id in (1069, 1205):
        assert _hosts(_events(expansion, "Microsoft-Windows-FailoverClustering", event_id)) == {
            incident["host"]
        }
    assert not _events(expansion, "NETLOGON", 5719)
    assert _no_link_down(expansion)


def test_link_down_with_a_second_dc_path_migrates_without_errors(expanded: dict) -> None:
    expansion = expanded["link-down-second-dc-path"]
    (incident,) = truth("link-down-second-dc-path")
    assert incident["cause"] == "none"
    assert _hosts(_events(expansion, "e1iexpress", 27)) == {incident["host"]}
    assert _events(expansion, "Microsoft-Windows-Hyper-V-VMMS", 20415)
    for provider, event_id in (("NETLOGON", 5719), ("Microsoft-Windows-FailoverClustering", 1228)):
        assert not _events(expansion, provider, event_id)
    assert not _events(expansion, "Microsoft-Windows-Hyper-V-High-Availability", 21502)


def test_noise_only_has_no_incident_and_no_error_of_interest(expanded: dict) -> None:
    expansion = expanded["noise-only"]
    assert truth("noise-only") == []
    for provider, event_id in (
        ("NETLOGON", 5719),
        ("Microsoft-Windows-FailoverClustering", 1228),
        ("e1iexpress", 27),
    ):
        assert not _events(expansion, provider, event_id)


def test_boot_scenarios_log_the_start_up_records_as_the_real_sample_does(expanded: dict) -> None:
    """Kernel-General 12, EventLog 6009 and 6005 (shapes of the real omerbenamram system.evtx boot), then
    5719, 129 and 1129 within minutes on the restarting node only."""
    for scenario_id in ("boot-time-dc-not-ready", "boot-time-cluster-name-failed"):
        expansion = expanded[scenario_id]
        for want in truth(scenario_id):
            boots = [e for e in _events(expansion, "Microsoft-Windows-Kernel-General", 12)]
            host_boots = [e for e in boots if e.computer == want["host"]]
            assert host_boots and _hosts(boots) <= {t["host"] for t in truth(scenario_id)}
            started = [e for e in _events(expansion, "EventLog", 6005) if e.computer == want["host"]]
            assert started and len(_binary(started[0])) == 48  # SYSTEMTIME + 8 zero bytes, as in the sample
            stamp = started[0].time
            assert _binary(started[0]).startswith(f"{stamp.year:04X}"[2:] + f"{stamp.year:04X}"[:2])
            first_5719 = min(
                e.time for e in _events(expansion, "NETLOGON", 5719) if e.computer == want["host"]
            )
            assert timedelta(0) < first_5719 - host_boots[0].time < timedelta(minutes=3)
    assert not _events(expanded["boot-time-dc-not-ready"], "Microsoft-Windows-FailoverClustering", 1228)
    failed = expanded["boot-time-cluster-name-failed"]
    assert _hosts(_events(failed, "Microsoft-Windows-FailoverClustering", 1228)) == {"HV02.contoso.local"}
    assert any(
        "0x80090311" in _text(e)
        for e in _events(failed, "Microsoft-Windows-Hyper-V-High-Availability", 21502)
    )


def test_kerberos_clock_skew_has_skew_errors_no_5719_and_same_moment_blips(expanded: dict) -> None:
    expansion = expanded["kerberos-clock-skew"]
    skew = [
        e
        for e in _events(expansion, "Microsoft-Windows-Security-Kerberos", 3)
        if "KRB_AP_ERR_SKEW" in _text(e)
    ]
    assert _hosts(skew) == {"HV03.contoso.local"}
    migrations = _events(expansion, "Microsoft-Windows-Hyper-V-High-Availability", 21502)
    assert migrations and all("0x80090324" in _text(e) for e in migrations)
    assert _hosts(_events(expansion, "Microsoft-Windows-Time-Service", 36)) == {"HV03.contoso.local"}
    assert not _events(expansion, "NETLOGON", 5719)
    blips = _events(expansion, "Microsoft-Windows-FailoverClustering", 1126)
    assert len(blips) == 8 and len(_hosts(blips)) == 4  # two moments, every node logs each


def test_truth_causes_and_times() -> None:
    for sid in SCENARIOS:
        scenario = load_scenario(sid)
        for incident in truth(sid):
            assert incident["cause"] in CAUSES
            assert incident["host"] in {n.fqdn for n in scenario.nodes}
            assert incident["start"] <= incident["first_event"] <= incident["end"]
            assert incident["start"].utcoffset() == timedelta(0)


def test_logged_times_carry_the_host_clock_offset(expanded: dict) -> None:
    scenario = load_scenario("shared-nic-sole-dc-path")
    (incident,) = truth(scenario)
    expansion = expanded["shared-nic-sole-dc-path"]
    for item in incident["events"]:
        node = next(n for n in scenario.nodes if n.fqdn == item["host"])
        assert item["logged_time"] - item["time"] == timedelta(seconds=node.clock_offset)
        channel_events = expansion[(item["host"], item["channel"])]
        assert any(e.time == item["logged_time"] and e.event_id == item["event_id"] for e in channel_events)


# --- shapes (events.md §2) ------------------------------------------------------------------------


def test_classic_manifest_and_userdata_shapes(expanded: dict) -> None:
    expansion = expanded["shared-nic-sole-dc-path"]
    (netlogon,) = _events(expansion, "NETLOGON", 5719)
    assert (
        netlogon.provider_guid is None and netlogon.qualifiers == 0 and netlogon.keywords == 0x80000000000000
    )
    assert netlogon.payload == Classic(("CONTOSO", "%%1311"), bytes.fromhex("5E0000C0"))
    assert netlogon.user_sid is None and netlogon.process_id == 0

    (cno,) = _events(expansion, "Microsoft-Windows-FailoverClustering", 1228)
    assert cno.provider_guid == "{BAF908EA-3421-4CA9-9B84-6689B8C6F85F}" and cno.user_sid == "S-1-5-18"
    assert isinstance(cno.payload, EventData)
    assert [v.value for _, v in cno.payload.fields] == [
        "Cluster Name",
        "Unable to obtain a logon token",
        "-1073741717",
    ]
    assert cno.process_id > 0

    (ha,) = _events(expansion, "Microsoft-Windows-Hyper-V-High-Availability", 21502)
    assert isinstance(ha.payload, UserData) and ha.payload.root == "VmlEventLog"
    assert ha.payload.xmlns == "http://www.microsoft.com/Windows/Virtualization/Events"
    names = [name for name, _ in ha.payload.fields]
    assert names == ["Parameter0", "Parameter1", "Parameter2"]
    assert ha.payload.fields[0][1].value == "Virtual Machine SQL01"
    assert ha.payload.fields[1][1].value == "4A1C7E52-0F3B-4E0D-9D5A-2B8C6E1F7A90"
    assert ha.channel == HA and ha.level == 2

    (down,) = _events(expansion, "e1iexpress", 27)
    assert down.qualifiers == 40964 and down.payload.strings[0] == "" and len(down.payload.binary) == 44


def test_background_shapes_follow_the_real_samples(expanded: dict) -> None:
    expansion = expanded["noise-only"]
    scm = _events(expansion, "Service Control Manager", 7036)[0]
    assert scm.event_source_name == "Service Control Manager" and scm.qualifiers == 16384
    assert [n for n, _ in scm.payload.fields] == ["param1", "param2"] and scm.payload.binary
    gp = _events(expansion, "Microsoft-Windows-GroupPolicy", 1500)[0]
    assert gp.activity_id and gp.opcode == 1
    assert [v.type for _, v in gp.payload.fields][:4] == [ValueType.UINT32] * 4
    time_events = _events(expansion, "Microsoft-Windows-Time-Service", 35) + _events(
        expansion, "Microsoft-Windows-Time-Service", 37
    )
    assert all(
        e.payload.template_name.startswith("TMP_EVENT_") and e.user_sid == "S-1-5-19" for e in time_events
    )
    updates = [e for e in _events(expansion, "Microsoft-Windows-WindowsUpdateClient", 44)]
    for start in updates:
        same = [e for x in expansion.values() for e in x if e.activity_id == start.activity_id]
        assert {e.event_id for e in same} <= {44, 43, 19}
    for hive in _events(expansion, "Microsoft-Windows-Kernel-General", 16):
        length, name = hive.payload.fields[0][1], hive.payload.fields[1][1]
        assert length.type == ValueType.UINT16 and length.value == len(name.value)
    dcom = _events(expansion, "Microsoft-Windows-DistributedCOM", 10016)[0]
    assert dcom.event_source_name == "DCOM" and len(dcom.payload.fields) == 11


def test_every_catalog_kind_is_tagged_and_written_somewhere(expanded: dict) -> None:
    catalog = load_catalog()
    assert all(k.tag in ("CONFIRMED", "SEEN", "INFERRED", "UNKNOWN") for k in catalog.kinds.values())
    seen = {(e.provider, e.event_id) for x in expanded.values() for events in x.values() for e in events}
    unused = {k.name for k in catalog.kinds.values() if (k.provider, k.event_id) not in seen}
    assert unused <= {"ha-21111"}, unused


# --- YAML errors name the file and the key -------------------------------------------------------


def _copy(tmp_path: Path, sid: str, edit) -> Path:
    text = (SCENARIO_DIR / f"{sid}.yaml").read_text(encoding="utf-8")
    path = tmp_path / f"{sid}.yaml"
    path.write_text(edit(text), encoding="utf-8")
    return path


def test_unknown_key_names_file_line_and_key(tmp_path: Path) -> None:
    path = _copy(tmp_path, "noise-only", lambda t: t.replace("duration: 12h", "duration: 12h\ndurration: 3h"))
    line = path.read_text(encoding="utf-8").splitlines().index("durration: 3h") + 1
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    assert str(caught.value) == f"{path}:{line}:1: durration: unknown key 'durration'"


def test_missing_field_names_the_key(tmp_path: Path) -> None:
    path = _copy(tmp_path, "noise-only", lambda t: t.replace("seed: 2106\n", ""))
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    assert str(path) in str(caught.value) and "missing required key 'seed'" in str(caught.value)


def test_nested_problems_are_all_reported_with_their_key_paths(tmp_path: Path) -> None:
    def edit(text: str) -> str:
        return text.replace("host: HVA1\n", "host: HVA9\n").replace(
            "recipe: kerberos-delegation-missing", "recipe: nope\n    atx: 3"
        )

    path = _copy(tmp_path, "kerberos-delegation-missing", edit)
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    problems = "\n".join(caught.value.problems)
    assert "incidents[0].atx: unknown key 'atx'" in problems
    assert caught.value.location.path == str(path) and caught.value.location.line


def test_semantic_problems_name_the_key(tmp_path: Path) -> None:
    def edit(text: str) -> str:
        return text.replace("host: HVA1\n", "host: HVA9\n").replace(
            "recipe: kerberos-delegation-missing", "recipe: nope"
        )

    path = _copy(tmp_path, "kerberos-delegation-missing", edit)
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    problems = "\n".join(caught.value.problems)
    assert "incidents[0].host: unknown node 'HVA9'" in problems
    assert "incidents[0].recipe: unknown recipe 'nope'" in problems
    assert all(line.startswith(f"{path}:") for line in caught.value.problems)


def test_steps_with_an_unknown_kind_or_label_are_rejected(tmp_path: Path) -> None:
    def edit(text: str) -> str:
        return text.replace(
            "recipe: kerberos-delegation-missing",
            "steps:\n      - {kind: ha-99999}\n      - {kind: ha-21300, after: nowhere}",
        )

    path = _copy(tmp_path, "kerberos-delegation-missing", edit)
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    problems = "\n".join(caught.value.problems)
    assert "incidents[0].steps[0].kind: unknown event kind 'ha-99999'" in problems
    assert "incidents[0].steps[1].after: no earlier step is labelled 'nowhere'" in problems


def test_unknown_scenario_id_lists_the_shipped_ones() -> None:
    with pytest.raises(
        ScenarioError, match="unknown scenario 'nope'; shipped: boot-time-cluster-name-failed, "
    ):
        load_scenario("nope")


def test_command_line_lists_and_forges(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from evtxcorr.cli import cli

    runner = CliRunner()
    listed = runner.invoke(cli, ["forge", "list"])
    assert listed.exit_code == 0 and "shared-nic-sole-dc-path " in listed.output
    built = runner.invoke(
        cli, ["forge", "build", "noise-only", "-o", str(tmp_path), "--layout", "privatecloud", "--zip"]
    )
    assert built.exit_code == 0
    assert built.output.strip() == str(tmp_path / "noise-only.zip")
    missing = runner.invoke(cli, ["forge", "build", "nope", "-o", str(tmp_path)])
    assert missing.exit_code == 1
    assert missing.output.startswith("Error: ")


def test_node_count_limits(tmp_path: Path) -> None:
    path = _copy(tmp_path, "noise-only", lambda t: t.replace("  - {name: HVB2, clock_offset: 28.1}\n", ""))
    with pytest.raises(ScenarioError, match="needs 2 to 8 nodes, has 1"):
        load_scenario(path)


# --- bundles -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_bundle(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("bundle")
    forge_bundle("kerberos-delegation-missing", out)
    return out / "kerberos-delegation-missing", expand("kerberos-delegation-missing")


def test_plain_bundle_reads_back_in_the_rust_parser(small_bundle: tuple[Path, dict]) -> None:
    folder, expansion = small_bundle
    for (fqdn, channel), events in expansion.items():
        path = folder / fqdn.split(".")[0] / f"{channel.replace('/', '%4')}.evtx"
        records = list(evtx.PyEvtxParser(str(path)).records())
        assert len(records) == len(events), path
        assert [r["event_record_id"] for r in records] == [e.record_id for e in events]


def test_plain_bundle_matches_what_was_forged_field_by_field(small_bundle: tuple[Path, dict]) -> None:
    folder, expansion = small_bundle
    fqdn = "HVA1.fabrikam.local"
    for channel in (SYSTEM, HA):
        path = folder / "HVA1" / f"{channel}.evtx"
        events = expansion[(fqdn, channel)]
        readback = read_rust(path)
        assert not readback.errors
        assert strip(readback.records, "recovered") == expected_records(events)


def test_layouts_name_files_as_the_tools_do(tmp_path: Path) -> None:
    tss = forge_bundle("noise-only", tmp_path, layout="tss", name="t")
    names = {p.name for p in tss}
    assert (
        "HVB1_evt_System.evtx" in names and "HVB1_evt_System.csv" in names and "HVB1_evt_System.txt" in names
    )
    assert "HVB2_evt_Microsoft-Windows-FailoverClustering-Operational.evtx" in names
    csv_text = (tmp_path / "t" / "HVB1_evt_System.csv").read_bytes().decode("utf-8")
    assert csv_text.startswith("TimeCreated,LevelDisplayName,ProviderName,Id,MachineName,Message\r\n")
    assert csv_text.count("\r\n") - 1 == len(expand("noise-only")[("HVB1.contoso.local", SYSTEM)])
    private = forge_bundle("noise-only", tmp_path, layout="privatecloud", name="p")
    assert {p.name for p in private} >= {
        "HVB1_UnfilteredEvent_System.EVTX",
        "HVB1_UnfilteredEvent_Microsoft-Windows-Hyper-V-High-Availability-Admin.EVTX",
        "HVB2_UnfilteredEvent_Microsoft-Windows-FailoverClustering-Operational.EVTX",
    }
    assert all(p.parent == tmp_path / "p" for p in private)


def test_zips_are_deterministic_and_sorted(tmp_path: Path) -> None:
    (first,) = forge_bundle("noise-only", tmp_path / "a", zip=True)
    (second,) = forge_bundle("noise-only", tmp_path / "b", zip=True)
    assert first.name == "noise-only.zip" and not (tmp_path / "a" / "noise-only").exists()
    assert first.read_bytes() == second.read_bytes()
    with zipfile.ZipFile(first) as zf:
        names = zf.namelist()
        assert names == sorted(names) and all(n.startswith("noise-only/HVB") for n in names)
        assert {i.date_time for i in zf.infolist()} == {(2026, 1, 1, 0, 0, 0)}
    shutil.rmtree(tmp_path / "a")
