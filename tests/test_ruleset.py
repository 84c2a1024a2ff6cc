"""Loading and checking rule folders: positions, duplicate and unknown keys, cross-file checks, adding
a team's folder next to the built-in rules."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import synthetic_events as se

from evtxcorr.correlate import correlate
from evtxcorr.diagnose import diagnose
from evtxcorr.errors import RuleError
from evtxcorr.model import CauseText
from evtxcorr.ruleset import builtin_dir, check_ruleset, load_ruleset, match
from evtxcorr.ruleset.yamlload import load_text

BUILTIN = builtin_dir()


def test_yaml_keeps_line_and_column_of_keys_and_items() -> None:
    doc = load_text("id: x\nevidence:\n  - key: a\n    weight: 0.2\n  - key: b\n", "c.yaml")
    assert str(doc.loc("evidence", 1, "key")) == "c.yaml:5:5"
    assert str(doc.loc("evidence", 0, "weight")) == "c.yaml:4:5"
    assert str(doc.loc("evidence", 0, "nonexistent")) == "c.yaml:3:5"  # nearest written ancestor


def test_yaml_duplicate_key_is_an_error_with_its_position() -> None:
    with pytest.raises(RuleError) as caught:
        load_text("id: x\ntitle: a\nid: y\n", "c.yaml")
    assert str(caught.value) == "c.yaml:3:1: duplicate key 'id' (first written on line 1)"


def test_yaml_syntax_error_has_a_position() -> None:
    with pytest.raises(RuleError) as caught:
        load_text("id: [x\nother: 1\n", "c.yaml")
    assert str(caught.value.location) == "c.yaml:2:6"


def test_builtin_rules_load_and_expose_texts() -> None:
    ruleset = load_ruleset()
    texts = ruleset.cause_texts()
    assert isinstance(texts["shared-nic-sole-dc-path"], CauseText)
    assert set(texts["shared-nic-sole-dc-path"].title) == {"en", "ja"}
    assert ruleset.detection_titles()["netlogon-5719-no-logon-servers"].startswith("Netlogon")
    assert "netlogon-5719-no-logon-servers" in ruleset.anchor_detections()
    assert "link-down" not in ruleset.anchor_detections()


def _team_folder(tmp_path: Path, cause_text: str, name: str = "team-cause.yaml") -> Path:
    (tmp_path / "causes").mkdir(parents=True, exist_ok=True)
    (tmp_path / "causes" / name).write_text(cause_text, encoding="utf-8")
    return tmp_path


def _cause_from(source: str, replace: dict[str, str]) -> str:
    text = (BUILTIN / "causes" / f"{source}.yaml").read_text(encoding="utf-8")
    for old, new in replace.items():
        assert old in text, old
        text = text.replace(old, new)
    return text


def test_broken_cause_file_error_names_file_line_and_problem(tmp_path: Path) -> None:
    text = _cause_from(
        "kerberos-delegation-missing",
        {
            "id: kerberos-delegation-missing": "id: team-cause",
            "    scope: same-host\n    relation: around\n    within_s: 600\n    expect: present\n    weight: 0.5": "    scope: same-host\n    relation: around\n    within_s: 600\n    expect: present\n    weight: 0.5\n"
            "    wieght: 0.1",
        },
    )
    folder = _team_folder(tmp_path, text)
    line = text.splitlines().index("    wieght: 0.1") + 1
    with pytest.raises(RuleError) as caught:
        load_ruleset([BUILTIN, folder])
    assert str(caught.value).startswith(f"{folder}/causes/team-cause.yaml:{line}:5: unknown key 'wieght'")


def test_check_collects_every_issue_with_locations(tmp_path: Path) -> None:
    text = _cause_from(
        "kerberos-delegation-missing",
        {
            "id: kerberos-delegation-missing": "id: team-cause",
            "  - ha-21502-no-credentials\n": "  - ha-21502-no-credentials\n  - no-such-detection\n",
            "    role: supporting\n    scope: same-host\n    relation: around\n    within_s: 600\n    expect: absent\n"
            "    weight: 0.15": "    role: sometimes\n    scope: same-host\n    relation: around\n    within_s: 600\n"
            "    expect: absent\n    weight: 1.5",
        },
    )
    folder = _team_folder(tmp_path, text)
    lines = text.splitlines()
    issues = [i for i in check_ruleset([BUILTIN, folder]) if i.severity == "error"]
    where = {i.message.split(" (")[0].split(":")[0]: str(i.location) for i in issues}
    path = f"{folder}/causes/team-cause.yaml"
    assert where["'sometimes' is not one of"] == f"{path}:{lines.index('    role: sometimes') + 1}:5"
    assert where["must be a number from 0 to 1"] == f"{path}:{lines.index('    weight: 1.5') + 1}:5"
    assert (
        where["anchor 'no-such-detection' is not a known detection"]
        == f"{path}:{lines.index('  - no-such-detection') + 1}:5"
    )
    assert len(issues) == 3


def test_missing_keys_are_reported(tmp_path: Path) -> None:
    folder = _team_folder(tmp_path, "id: team-cause\ntitle: {en: a, ja: あ}\n")
    messages = {i.message for i in check_ruleset([BUILTIN, folder]) if i.severity == "error"}
    assert {"missing key 'anchors'", "missing key 'evidence'", "missing key 'verify'"} <= messages


def test_duplicate_cause_id_across_folders_is_an_error(tmp_path: Path) -> None:
    text = _cause_from("kerberos-delegation-missing", {"prior: 0.1": "prior: 0.2"})
    folder = _team_folder(tmp_path, text, "kerberos-delegation-missing.yaml")
    with pytest.raises(RuleError, match="cause id 'kerberos-delegation-missing' is already used by"):
        load_ruleset([BUILTIN, folder])


def test_checking_a_copy_of_the_builtin_rules_passes(tmp_path: Path) -> None:
    """`evtxcorr rules check rules/` in a checkout, next to an installed copy: same ids, same content."""
    copy = tmp_path / "rules"
    shutil.copytree(BUILTIN, copy)
    assert [f"{i.severity}: {i}" for i in check_ruleset([BUILTIN, copy])] == []
    assert load_ruleset([BUILTIN, copy]).replaced == ()


def test_overrides_replaces_a_builtin_cause_and_says_so(tmp_path: Path) -> None:
    text = _cause_from(
        "kerberos-delegation-missing",
        {
            "prior: 0.1": "prior: 0.2",
            "id: kerberos-delegation-missing": "id: kerberos-delegation-missing\noverrides: kerberos-delegation-missing",
        },
    )
    folder = _team_folder(tmp_path, text, "kerberos-delegation-missing.yaml")
    assert [i for i in check_ruleset([BUILTIN, folder]) if i.severity == "error"] == []
    ruleset = load_ruleset([BUILTIN, folder])
    assert ruleset.causes["kerberos-delegation-missing"].prior == 0.2
    assert ruleset.replaced == (
        f"cause 'kerberos-delegation-missing' of {BUILTIN}/causes/kerberos-delegation-missing.yaml is replaced "
        f"by {folder}/causes/kerberos-delegation-missing.yaml (overrides: kerberos-delegation-missing)",
    )


def test_overrides_of_an_id_nobody_defines_is_an_error(tmp_path: Path) -> None:
    text = TEAM_CAUSE.replace("id: team-cause", "id: team-cause\noverrides: team-cause")
    folder = _team_folder(tmp_path, text)
    errors = [i.message for i in check_ruleset([BUILTIN, folder]) if i.severity == "error"]
    assert errors == ["overrides 'team-cause', but no earlier rules folder defines it"]


def test_a_team_detection_can_override_a_builtin_one(tmp_path: Path) -> None:
    (tmp_path / "sigma").mkdir()
    text = (BUILTIN / "sigma" / "link-down.yml").read_text(encoding="utf-8")
    text = (
        text.replace("      - e2fexpress\n", "      - e2fexpress\n      - b57nd60a\n")
        + "overrides: link-down\n"
    )
    (tmp_path / "sigma" / "link-down.yml").write_text(text, encoding="utf-8")
    ruleset = load_ruleset([BUILTIN, tmp_path])
    assert ruleset.replaced and ruleset.replaced[0].startswith("detection 'link-down' of ")
    table = se.frame([se.link_down("HV01", 0, "b57nd60a")])
    assert match(table, ruleset) == {0: ("link-down",)}
    copy = text.replace("overrides: link-down\n", "")
    (tmp_path / "sigma" / "link-down.yml").write_text(copy, encoding="utf-8")
    with pytest.raises(RuleError, match="detection name 'link-down' is already used by"):
        load_ruleset([BUILTIN, tmp_path])


def test_broken_sigma_file_names_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "sigma").mkdir()
    bad = (
        (BUILTIN / "sigma" / "netlogon-3210.yml")
        .read_text()
        .replace("name: netlogon-3210", "name: team-3210")
    )
    bad = bad.replace("    EventID: 3210", "    EventID|cidr: 3210")
    (tmp_path / "sigma" / "team-3210.yml").write_text(bad)
    line = bad.splitlines().index("    EventID|cidr: 3210") + 1
    issues = [str(i) for i in check_ruleset([BUILTIN, tmp_path]) if i.severity == "error"]
    assert any(i.startswith(f"{tmp_path}/sigma/team-3210.yml:{line}:5:") and "cidr" in i for i in issues), (
        issues
    )


def test_team_settings_override_builtin_keys(tmp_path: Path) -> None:
    (tmp_path / "settings.yaml").write_text("correlate:\n  gap_s: 42\ndiagnose:\n  threshold: 0.7\n")
    ruleset = load_ruleset([BUILTIN, tmp_path])
    assert (ruleset.settings.gap_s, ruleset.settings.threshold) == (42.0, 0.7)
    assert ruleset.settings.lookback_s == load_ruleset().settings.lookback_s


TEAM_CAUSE = """
id: team-cause
title: {en: Cable pulled and the second path held, ja: 抜線されたが別経路で継続}
summary: {en: "Link down on {host}, no DC error.", ja: "{host} でリンク切断、DC エラーなし。"}
explanation: {en: Explanation., ja: 説明。}
remedy: {en: Nothing to do., ja: 対応不要。}
anchors: [link-down]
confidence: {prior: 0.3}
evidence:
  - key: heartbeat
    detection: fc-1126-interface-unreachable
    role: required
    scope: any-host
    relation: after
    within_s: 60
    expect: present
    weight: 0.3
    description: {en: Heartbeat lost., ja: ハートビート喪失。}
  - key: dc-still-there
    detection: netlogon-5719-no-logon-servers
    role: supporting
    scope: all-nodes
    relation: around
    within_s: 600
    expect: absent
    weight: 0.2
    description: {en: No 5719 anywhere., ja: どのノードにも 5719 なし。}
cannot_show: {en: [Routing.], ja: [ルーティング。]}
verify: [Get-NetRoute]
"""


def test_a_new_cause_dropped_into_a_folder_is_diagnosed(tmp_path: Path) -> None:
    """A team cause from tmp_path, anchored on a built-in detection no built-in cause anchors on."""
    folder = _team_folder(tmp_path, TEAM_CAUSE)
    assert [i for i in check_ruleset([BUILTIN, folder]) if i.severity == "error"] == []
    ruleset = load_ruleset([BUILTIN, folder])
    assert ruleset.cause_texts()["team-cause"].evidence["heartbeat"] == {
        "en": "Heartbeat lost.",
        "ja": "ハートビート喪失。",
    }
    rows = se.cluster() + [
        se.link_down("HV01", 0),
        se.fc("HV02", 4, 1126, "HV01 - Ethernet 2", "HV01", "Net 2"),
    ]
    table = se.frame(rows)
    signals = match(table, ruleset)
    incidents = correlate(table, signals, ruleset)
    findings, _rejected = diagnose(table, incidents, signals, ruleset)
    assert [(f.cause, f.host, f.confidence) for f in findings] == [("team-cause", "hv01", 0.8)]
    builtin_only = load_ruleset()
    assert correlate(table, match(table, builtin_only), builtin_only) == []  # nothing without the team cause


def test_missing_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(RuleError, match="rules folder does not exist"):
        load_ruleset([tmp_path / "nope"])


def test_required_evidence_must_expect_presence(tmp_path: Path) -> None:
    text = TEAM_CAUSE.replace(
        "    role: supporting\n    scope: all-nodes", "    role: required\n    scope: all-nodes"
    )
    folder = _team_folder(tmp_path, text)
    line = text.splitlines().index("    expect: absent") + 1
    issues = [str(i) for i in check_ruleset([BUILTIN, folder]) if i.severity == "error"]
    assert issues == [
        f"{folder}/causes/team-cause.yaml:{line}:5: required evidence 'dc-still-there' must "
        "expect 'present' (make it supporting, and add a refuting item for the presence)"
    ]
