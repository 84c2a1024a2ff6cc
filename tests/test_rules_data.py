"""The shipped rules/ folder: loads, passes every check, stays valid Sigma for other tools, and each
detection fires on the event it describes."""

from __future__ import annotations

from pathlib import Path

import pytest
import synthetic_events as se
from sigma.collection import SigmaCollection
from sigma.rule import SigmaRule

from evtxcorr.ruleset import builtin_dir, check_ruleset, load_ruleset, match

RULES_DIR = builtin_dir()
SIGMA_FILES = sorted((RULES_DIR / "sigma").glob("*.yml"))
RULES = load_ruleset()


def test_rules_check_passes_without_errors_or_warnings() -> None:
    assert [f"{i.severity}: {i}" for i in check_ruleset([RULES_DIR])] == []


@pytest.mark.parametrize("path", SIGMA_FILES, ids=[p.stem for p in SIGMA_FILES])
def test_each_sigma_file_is_valid_for_pysigma(path: Path) -> None:
    rule = SigmaRule.from_yaml(path.read_text(encoding="utf-8"))
    assert rule.errors == []
    assert rule.name == path.stem
    assert rule.detection.parsed_condition[0].parsed is not None


def test_the_whole_folder_loads_as_one_sigma_collection() -> None:
    texts = [p.read_text(encoding="utf-8") for p in SIGMA_FILES]
    collection = SigmaCollection.from_yaml("\n---\n".join(texts))
    assert len(collection) == len(SIGMA_FILES) == len(RULES.detections)
    assert len({str(r.id) for r in collection}) == len(SIGMA_FILES)


# One event per detection that it must match, built as events.md describes the record.
EXAMPLES = {
    "link-down": [
        se.link_down("HV01", 0),
        se.link_down("HV01", 1, "Tcpip"),
        se.link_down("HV01", 2, "e1dexpress"),
    ],
    "link-up": [se.link_up("HV01", 0)],
    "netlogon-5719-no-logon-servers": [se.netlogon_5719("HV01", 0), se.netlogon_5719("HV01", 1, binary="")],
    "netlogon-5719-logon-failure": [
        se.netlogon_5719("HV01", 0, "6D0000C0"),
        se.netlogon_5719("HV01", 1, "220000C0"),
    ],
    "netlogon-5719-other": [se.netlogon_5719("HV01", 0, "E50000C0")],
    "netlogon-3210": [se.netlogon_3210("HV01", 0)],
    "fc-1126-interface-unreachable": [se.fc("HV01", 0, 1126, "HV02 - Ethernet", "HV02", "Cluster Network 1")],
    "fc-1127-interface-failed": [se.fc("HV01", 0, 1127, "HV02 - Ethernet", "HV02", "Cluster Network 1")],
    "fc-1135-node-removed": [se.fc("HV01", 0, 1135, "HV02")],
    "fc-1153-role-failover": [se.fc_op("HV01", 0, 1153, "SQL01", "HV01", "HV02")],
    "fc-1641-role-moving": [se.role_move("HV01", 0, "HV01", "HV02")],
    "fc-1228-logon-token": [se.fc_1228("HV01", 0, "42")],
    "fc-1228-no-dc": [se.fc_1228("HV01", 0), se.fc_1228("HV01", 1, "1311")],
    "fc-1228-bad-credentials": [se.fc_1228("HV01", 0, "1326"), se.fc_1228("HV01", 1, "5")],
    "fc-1069-resource-failed": [se.fc("HV01", 0, 1069, "Cluster Name", "Cluster Group", "Network Name")],
    "fc-1205-role-not-online": [se.fc("HV01", 0, 1205, "Cluster Group")],
    "fc-1206-cno-update-failed": [se.fc("HV01", 0, 1206, "Cluster Name", "CONTOSO", "5", "CONTOSO\\C$")],
    "fc-1207-cno-update-failed": [se.fc("HV01", 0, 1207, "Cluster Name", "CONTOSO", "rename", "x", "y")],
    "ha-21502-no-authority": [se.ha_21502("HV01", 0)],
    "ha-21502-no-credentials": [se.ha_21502("HV01", 0, "0x8009030E")],
    "ha-21502-logon-denied": [se.ha_21502("HV01", 0, "0x8009030C")],
    "ha-21502-other": [se.ha_21502("HV01", 0, "0x80090303")],
    "ha-21300-migration-started": [se.ha("HV01", 0, 21300)],
    "ha-21301-migration-completed": [se.ha("HV01", 0, 21301)],
    "vmms-20415-migration-completed": [
        se.row(
            "HV02",
            0,
            "Microsoft-Windows-Hyper-V-VMMS",
            20415,
            channel=se.VMMS_CHANNEL,
            data=("SQL01", "4A1C", "0.4"),
            level=4,
        )
    ],
    "gp-1129-no-dc-connectivity": [se.gp_1129("HV01", 0)],
    "system-boot": [
        se.row("HV01", 0, "EventLog", 6005, level=4),
        se.row(
            "HV01",
            1,
            "Microsoft-Windows-Kernel-General",
            12,
            level=4,
            data=("10", "0", "17763", "1", "0", "0", "2026-09-15T14:37:31.000000000Z"),
        ),
    ],
    "time-129-no-domain-peer": [
        se.row(
            "HV01",
            0,
            "Microsoft-Windows-Time-Service",
            129,
            data=("The entry is not found. (0x800706E1)", "15"),
            level=3,
        )
    ],
}


def test_every_detection_has_an_example() -> None:
    assert set(EXAMPLES) == set(RULES.detections)


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_each_detection_fires_on_its_example_and_only_where_meant(name: str) -> None:
    table = se.frame(EXAMPLES[name] + se.quiet_log("HV01", 0, 60, 30))
    signals = match(table, RULES)
    for index in table.index:
        names = signals.get(index, ())
        if table.loc[index, "provider"] in (
            "Service Control Manager",
            "Microsoft-Windows-Time-Service",
        ) and table.loc[index, "event_id"] in (7036, 37):
            assert names == ()
        else:
            assert name in names, (name, table.loc[index].to_dict())


def test_the_three_5719_detections_partition_every_5719() -> None:
    rows = [
        se.netlogon_5719("HV01", i, b)
        for i, b in enumerate(("5E0000C0", "6D0000C0", "220000C0", "E50000C0", ""))
    ]
    signals = match(se.frame(rows), RULES)
    assert all(len([n for n in names if n.startswith("netlogon-5719")]) == 1 for names in signals.values())
    assert len(signals) == len(rows)


def test_every_cause_speaks_english_and_japanese() -> None:
    for cause in RULES.causes.values():
        text = cause.text()
        for field in (text.title, text.summary, text.explanation, text.remedy):
            assert set(field) == {"en", "ja"}
        assert set(text.cannot_show) == {"en", "ja"}
        assert len(text.cannot_show["en"]) == len(text.cannot_show["ja"])
        assert all(set(d) == {"en", "ja"} for d in text.evidence.values())
        assert cause.verify


def test_shared_nic_cause_names_what_the_logs_cannot_show() -> None:
    cause = RULES.causes["shared-nic-sole-dc-path"]
    assert any("AllowManagementOS" in line for line in cause.cannot_show["en"])
    assert any("Get-VMSwitch" in line and "AllowManagementOS" in line for line in cause.verify)
    assert any("Get-NetRoute" in line for line in cause.verify)
    assert cause.fallback is False and RULES.causes["unknown-auth-failure"].fallback is True


def _weights_table() -> str:
    lines = []
    for cause_id, cause in RULES.causes.items():
        fallback = " (fallback)" if cause.fallback else ""
        lines.append(f"\n`{cause_id}`{fallback}: prior {cause.prior:g}; anchors {', '.join(cause.anchors)}\n")
        lines.append(
            "| evidence | detection | role | scope | window | expect | weight |\n|---|---|---|---|---|---|---|"
        )
        for e in cause.evidence:
            expect = e.expect + (" (every node)" if e.nodes == "every" else "")
            lines.append(
                f"| {e.key} | {e.detection} | {e.role} | {e.scope} | {e.relation} {e.within_s:g} s | {expect} "
                f"| {e.weight:g} |"
            )
    return "\n".join(lines).strip("\n")


def test_readme_weights_table_matches_the_cause_files() -> None:
    readme = (RULES_DIR / "README.md").read_text(encoding="utf-8")
    documented = readme.split("<!-- weights:begin -->\n")[1].split("\n<!-- weights:end -->")[0]
    assert documented == _weights_table()


def test_every_builtin_detection_has_a_japanese_title() -> None:
    ruleset = load_ruleset()
    english, japanese = ruleset.detection_titles("en"), ruleset.detection_titles("ja")
    missing = [name for name in english if japanese[name] == english[name]]
    assert not missing, missing
    assert all(any("\u3040" <= ch <= "\u9fff" for ch in title) for title in japanese.values())
