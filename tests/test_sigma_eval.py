"""Sigma rules evaluated over the event table: value semantics, modifiers, conditions, refusals."""

from __future__ import annotations

import numpy as np
import pytest
import synthetic_events as se

from evtxcorr.errors import RuleError
from evtxcorr.ruleset import Issue, builtin_dir, load_ruleset, match
from evtxcorr.ruleset.sigma import FrameView, detection_from_doc, evaluate
from evtxcorr.ruleset.yamlload import load_text

SETTINGS = load_ruleset().settings
BUILTIN_DIR = builtin_dir()

HEADER = """title: test rule
name: test-rule
id: 2a1c7e52-0f3b-4e0d-9d5a-2b8c6e1f7a90
status: test
logsource:
  product: windows
  service: {service}
detection:
"""


def compile_rule(detection: str, service: str = "system") -> tuple[object, list[Issue]]:
    issues: list[Issue] = []
    doc = load_text(HEADER.format(service=service) + detection, "rules/sigma/test-rule.yml")
    return detection_from_doc(doc, SETTINGS, issues), issues


def hits(detection_yaml: str, rows: list[dict], service: str = "system") -> list[int]:
    detection, issues = compile_rule(detection_yaml, service)
    assert detection is not None, [str(i) for i in issues]
    table = se.frame(rows)
    positions = evaluate(FrameView(table, SETTINGS), detection)
    return sorted(table.loc[positions, "record_id"].tolist())


@pytest.fixture
def rows() -> list[dict]:
    return [
        se.netlogon_5719("HV01", 0),  # 1001
        se.netlogon_5719("HV01", 1, "6D0000C0"),  # 1002
        se.netlogon_5719("HV01", 2, "E50000C0"),  # 1003
        se.link_down("HV01", 3),  # 1004
        se.fc_1228("HV01", 4),  # 1005
        se.fc_1228("HV01", 5, "1326"),  # 1006
        se.gp_1129("HV01", 6),  # 1007
    ]


@pytest.fixture(autouse=True)
def _fresh_record_ids() -> None:
    se._record_ids.clear()


CASES = [
    ("exact, case-insensitive", "  sel:\n    Provider_Name: netlogon\n  condition: sel", [1001, 1002, 1003]),
    ("numeric EventID", "  sel:\n    EventID: 1228\n  condition: sel", [1005, 1006]),
    ("EventID written as a string", "  sel:\n    EventID: '27'\n  condition: sel", [1004]),
    ("list is OR", "  sel:\n    EventID: [27, 1129]\n  condition: sel", [1004, 1007]),
    ("Binary", "  sel:\n    Binary: 6d0000c0\n  condition: sel", [1002]),
    ("param2 positional", "  sel:\n    param2: '%%1311'\n  condition: sel", [1001]),
    ("param beyond the payload never matches", "  sel:\n    param9: x\n  condition: sel", []),
    ("contains", "  sel:\n    param2|contains: LOGON TOKEN\n  condition: sel", [1005, 1006]),
    ("startswith", "  sel:\n    param2|startswith: intel\n  condition: sel", [1004]),
    ("endswith", "  sel:\n    param1|endswith: SO\n  condition: sel", [1001, 1002, 1003]),
    ("wildcard in the middle", "  sel:\n    param2: 'Unable*token'\n  condition: sel", [1005, 1006]),
    ("single-char wildcard", "  sel:\n    param3: '132?'\n  condition: sel", [1006]),
    ("re is a case-sensitive search", "  sel:\n    param2|re: 'Gigabit \\w+'\n  condition: sel", [1004]),
    ("re does not ignore case", "  sel:\n    param2|re: 'gigabit'\n  condition: sel", []),
    ("contains|all", "  sel:\n    param2|contains|all: [Unable, token]\n  condition: sel", [1005, 1006]),
    (
        "contains|all needs every value",
        "  sel:\n    param2|contains|all: [Unable, nothing]\n  condition: sel",
        [],
    ),
    ("Codes: any element", "  sel:\n    Codes: '0x0000051F'\n  condition: sel", [1001]),
    ("Codes list", "  sel:\n    Codes: ['0xC000006B', '0x0000052E']\n  condition: sel", [1005, 1006]),
    ("named payload field", "  sel:\n    ErrorCode: '1222'\n  condition: sel", [1007]),
    ("Data: any payload value", "  sel:\n    Data: contoso\n  condition: sel", [1001, 1002, 1003]),
    ("null: no such value", "  sel:\n    EventID: 27\n    Binary: null\n  condition: sel", []),
    (
        "not",
        "  a:\n    Provider_Name: NETLOGON\n  b:\n    Binary: 5E0000C0\n  condition: a and not b",
        [1002, 1003],
    ),
    (
        "1 of",
        "  sel_a:\n    EventID: 27\n  sel_b:\n    EventID: 1129\n  other:\n    EventID: 5719\n"
        "  condition: 1 of sel_*",
        [1004, 1007],
    ),
    (
        "all of them",
        "  a:\n    Provider_Name: NETLOGON\n  b:\n    param2: '%%1326'\n  condition: all of them",
        [1002],
    ),
    (
        "parentheses",
        "  a:\n    EventID: 5719\n  b:\n    Binary: 5E0000C0\n  c:\n    Binary: E50000C0\n"
        "  condition: a and not (b or c)",
        [1002],
    ),
]


@pytest.mark.parametrize(("name", "detection", "expected"), CASES, ids=[c[0] for c in CASES])
def test_semantics(rows: list[dict], name: str, detection: str, expected: list[int]) -> None:
    assert hits(detection, rows) == expected


def test_logsource_restricts_channels() -> None:
    rows = [se.ha_21502("HV01", 0), se.netlogon_5719("HV01", 1)]
    rows[1]["event_id"] = 21502  # same id on the System channel: not this rule's log
    assert hits("  sel:\n    EventID: 21502\n  condition: sel", rows, "hyper-v-high-availability") == [1001]


def test_empty_channel_rows_are_still_looked_at() -> None:
    rows = [se.netlogon_5719("HV01", 0)]
    rows[0]["channel"] = ""
    assert hits("  sel:\n    EventID: 5719\n  condition: sel", rows) == [1001]


@pytest.mark.parametrize("modifier", ["base64", "cidr", "gt", "windash", "cased", "exists"])
def test_unsupported_modifier_is_refused_with_rule_and_modifier(modifier: str) -> None:
    value = {"exists": "true", "cidr": "'10.0.0.0/8'", "gt": "5"}.get(modifier, "'5'")
    detection, issues = compile_rule(
        f"  sel:\n    EventID: 1\n    param1|{modifier}: {value}\n  condition: sel"
    )
    assert detection is None
    errors = [str(i) for i in issues if i.severity == "error"]
    assert any(f"'{modifier}'" in e and e.startswith("rules/sigma/test-rule.yml:11:5:") for e in errors), (
        errors
    )


def test_keyword_detection_is_refused() -> None:
    detection, issues = compile_rule("  keywords:\n    - something\n  condition: keywords")
    assert detection is None
    assert any("keyword" in i.message for i in issues)


def test_unmapped_logsource_is_an_error() -> None:
    detection, issues = compile_rule("  sel:\n    EventID: 1\n  condition: sel", service="application")
    assert detection is None
    assert any("windows/application" in i.message for i in issues)


def test_condition_naming_a_missing_selection_is_an_error() -> None:
    detection, issues = compile_rule("  sel:\n    EventID: 1\n  condition: sel and other")
    assert detection is None
    assert [str(i.location) for i in issues] == ["rules/sigma/test-rule.yml:11:3"]


def test_match_maps_rows_to_detection_names_by_frame_index() -> None:
    ruleset = load_ruleset()
    table = se.frame([se.netlogon_5719("HV01", 0), se.link_down("HV01", -5), se.noise("HV01", 3)])
    table.index = table.index + 100  # not a RangeIndex from 0
    signals = match(table, ruleset)
    by_event = {int(table.loc[i, "event_id"]): names for i, names in signals.items()}
    assert by_event == {27: ("link-down",), 5719: ("netlogon-5719-no-logon-servers",)}
    assert set(signals) <= set(table.index)


def test_vectorised_and_narrowing_agrees_with_a_row_by_row_reference() -> None:
    """Many random rows: the narrowed evaluation gives what a plain per-row check gives."""
    rng = np.random.default_rng(7)
    makers = [
        lambda h, s: se.netlogon_5719(h, s),
        lambda h, s: se.netlogon_5719(h, s, "6D0000C0"),
        lambda h, s: se.fc_1228(h, s, "1326"),
        lambda h, s: se.fc_1228(h, s),
        se.link_down,
        se.noise,
        lambda h, s: se.ha_21502(h, s, "0x8009030E"),
        lambda h, s: se.ha_21502(h, s),
    ]
    rows = [makers[k](f"HV0{rng.integers(1, 4)}", float(i)) for i, k in enumerate(rng.integers(0, 8, 400))]
    table = se.frame(rows)
    signals = match(table, load_ruleset())

    def reference(r: dict) -> set[str]:
        names = set()
        if r["provider"] == "NETLOGON" and r["event_id"] == 5719:
            names.add(
                "netlogon-5719-no-logon-servers"
                if r["binary"] == "5E0000C0"
                else "netlogon-5719-logon-failure"
            )
        if r["event_id"] == 1228:
            names.add("fc-1228-logon-token")
            names.add("fc-1228-bad-credentials" if r["data"][2] == "1326" else "fc-1228-no-dc")
        if r["event_id"] == 27:
            names.add("link-down")
        if r["event_id"] == 21502:
            names.add("ha-21502-no-authority" if "0x80090311" in r["data"][2] else "ha-21502-no-credentials")
        return names

    ruleset = load_ruleset()
    single_row = {name for name, d in ruleset.detections.items() if d.kind == "rule"}
    for index, record in table.iterrows():
        assert set(signals.get(index, ())) & single_row == reference(record.to_dict()), record.to_dict()


def test_evaluation_error_names_the_rule_file(monkeypatch: pytest.MonkeyPatch) -> None:
    ruleset = load_ruleset()
    table = se.frame([se.netlogon_5719("HV01", 0)]).drop(columns=["binary"])
    with pytest.raises(RuleError) as caught:
        match(table, ruleset)
    assert caught.value.location is not None and caught.value.location.path.endswith(".yml")


# --- strictness (issue 11 point 7): a misspelt rule fails loudly, never matches nothing or everything ---


def test_unknown_field_is_an_error_at_load() -> None:
    detection, issues = compile_rule("  sel:\n    ResourceName: Cluster Name\n  condition: sel")
    assert detection is None
    assert [(i.severity, str(i.location)) for i in issues] == [("error", "rules/sigma/test-rule.yml:10:5")]
    assert "unknown field 'ResourceName'" in issues[0].message


def test_a_misspelt_field_under_not_is_refused_instead_of_matching_every_row(tmp_path) -> None:
    (tmp_path / "sigma").mkdir()
    text = HEADER.format(service="system").replace("name: test-rule", "name: misspelt") + (
        "  sel:\n    EventID: 5719\n  f:\n    ErrorCod: '1311'\n  condition: sel and not f\n"
    )
    (tmp_path / "sigma" / "misspelt.yml").write_text(text, encoding="utf-8")
    with pytest.raises(RuleError, match="unknown field 'ErrorCod'"):
        load_ruleset([BUILTIN_DIR, tmp_path])


def test_data_null_means_no_payload_value_not_one_empty_element() -> None:
    rows = [
        se.link_down("HV01", 0),  # Data ['', 'Intel...']: has a value
        se.row("HV01", 1, "EventLog", 6005, level=4),  # no payload at all
        se.row("HV01", 2, "EventLog", 6005, level=4, data=("", "")),  # only empty values
    ]
    assert hits("  sel:\n    Data: null\n  condition: sel", rows) == [1002, 1003]
    assert hits(
        "  sel:\n    EventID: 27\n  nodata:\n    Data: null\n  condition: sel and not nodata", rows
    ) == [1001]


def test_named_null_means_that_value_is_absent_or_empty() -> None:
    gp = se.gp_1129("HV01", 0)
    empty = se.gp_1129("HV01", 1)
    empty["data"] = tuple(
        "" if n == "ErrorCode" else v for v, n in zip(empty["data"], empty["data_names"], strict=True)
    )
    assert hits("  sel:\n    ErrorCode: null\n  condition: sel", [gp, empty, se.link_down("HV01", 2)]) == [
        1002,
        1003,
    ]


def test_empty_channel_rows_pass_a_logsource_only_for_its_providers() -> None:
    netlogon = se.netlogon_5719("HV01", 0)
    stranger = se.row("HV01", 1, "SomeAgent", 21502, channel="")
    netlogon["channel"] = ""
    assert hits("  sel:\n    EventID: [5719, 21502]\n  condition: sel", [netlogon, stranger]) == [1001]
    assert hits("  sel:\n    EventID: 21502\n  condition: sel", [stranger], "hyper-v-high-availability") == []


@pytest.mark.parametrize(
    ("modifiers", "pattern", "expected"),
    [
        ("re|i", "gigabit", [1004]),
        ("re|m", "^Gigabit", []),
        ("re|s", "Intel.*Connection", [1004]),
        ("re|i|s", "INTEL.*connection", [1004]),
    ],
)
def test_regex_flag_modifiers_are_supported(rows: list[dict], modifiers: str, pattern: str, expected) -> None:
    assert hits(f"  sel:\n    param2|{modifiers}: '{pattern}'\n  condition: sel", rows) == expected


def test_regex_multiline_flag_anchors_at_line_starts() -> None:
    text = "Live migration failed.\nThe Virtual Machine Management Service failed (0x80090311)."
    row = se.row("HV01", 0, "NETLOGON", 5719, data=("CONTOSO", text))
    assert hits("  sel:\n    param2|re|m: '^The Virtual'\n  condition: sel", [row]) == [1001]
    assert hits("  sel:\n    param2|re: '^The Virtual'\n  condition: sel", [row]) == []


# --- Sigma correlation rules (v2) ----------------------------------------------------------------

CORRELATION_HEADER = """title: correlation under test
name: corr
id: 7d0c3b2a-1c7e-4e0d-9d5a-2b8c6e1f7a90
correlation:
"""


def correlated(body: str, rows: list[dict], tmp_path) -> list[int]:
    """Record ids the correlation `corr` (body under `correlation:`) matches, next to the built-in rules."""
    (tmp_path / "sigma").mkdir(exist_ok=True)
    (tmp_path / "sigma" / "corr.yml").write_text(CORRELATION_HEADER + body, encoding="utf-8")
    ruleset = load_ruleset([BUILTIN_DIR, tmp_path])
    table = se.frame(rows)
    signals = match(table, ruleset)
    return sorted(int(table.loc[i, "record_id"]) for i, names in signals.items() if "corr" in names)


def _dc_and_cno(gap_s: float, host2: str = "HV01") -> list[dict]:
    return [se.netlogon_5719("HV01", 0), se.fc_1228(host2, gap_s), se.link_down("HV01", 5)]


TEMPORAL = (
    "  type: temporal\n  rules: [netlogon-5719-no-logon-servers, fc-1228-no-dc]\n"
    "  group-by: [Computer]\n  timespan: 10m\n"
)


def test_temporal_needs_every_rule_on_the_same_host_within_the_timespan(tmp_path) -> None:
    assert correlated(TEMPORAL, _dc_and_cno(300), tmp_path) == [1001, 1002]
    se._record_ids.clear()
    assert correlated(TEMPORAL, _dc_and_cno(601), tmp_path) == []  # 10 min and 1 s apart
    se._record_ids.clear()
    assert correlated(TEMPORAL, _dc_and_cno(60, "HV02"), tmp_path) == []  # another host


def test_temporal_ordered_needs_the_listed_order(tmp_path) -> None:
    body = TEMPORAL.replace("temporal", "temporal_ordered")
    assert correlated(body, _dc_and_cno(60), tmp_path) == [1001, 1002]
    se._record_ids.clear()
    assert correlated(body, _dc_and_cno(-60), tmp_path) == []  # 1228 first


def test_event_count_counts_per_group_in_a_sliding_window(tmp_path) -> None:
    body = (
        "  type: event_count\n  rules: [netlogon-5719-no-logon-servers]\n  group-by: [Computer]\n"
        "  timespan: 1h\n  condition: {gte: 3}\n"
    )
    rows = [se.netlogon_5719("HV01", s) for s in (0, 1000, 3000, 9000)] + [se.netlogon_5719("HV02", 10)]
    assert correlated(body, rows, tmp_path) == [1001, 1002, 1003]


def test_value_count_counts_distinct_values(tmp_path) -> None:
    body = (
        "  type: value_count\n  rules: [fc-1126-interface-unreachable]\n  timespan: 5m\n"
        "  condition: {gte: 2, field: param2}\n"
    )
    rows = [
        se.fc("HV03", 0, 1126, "HV01 - Ethernet", "HV01", "Net 1"),
        se.fc("HV03", 10, 1126, "HV01 - Ethernet", "HV01", "Net 1"),
        se.fc("HV03", 20, 1126, "HV02 - Ethernet", "HV02", "Net 1"),
        se.fc("HV03", 900, 1126, "HV04 - Ethernet", "HV04", "Net 1"),
    ]
    assert correlated(body, rows, tmp_path) == [1001, 1002, 1003]


def test_a_cause_can_weigh_a_correlation(tmp_path) -> None:
    """The built-in shared-NIC cause weighs the built-in 5719 + 1228 correlation."""
    ruleset = load_ruleset()
    spec = next(
        s for s in ruleset.causes["shared-nic-sole-dc-path"].evidence if s.key == "cluster-name-no-token"
    )
    assert ruleset.detections[spec.detection].kind == "correlation"
    table = se.frame(_dc_and_cno(120))
    signals = match(table, ruleset)
    assert {names for names in signals.values()} >= {
        ("netlogon-5719-no-logon-servers", "dc-lost-with-cluster-name-error"),
    }


@pytest.mark.parametrize(
    ("body", "line", "message"),
    [
        (
            "  type: value_sum\n  rules: [link-down]\n  timespan: 5m\n  condition: {gte: 2, field: param2}\n",
            5,
            "value_sum",
        ),
        (
            "  type: temporal\n  rules: [link-down, link-up]\n  timespan: 5m\n  condition: link-down and link-up\n",
            8,
            "extended",
        ),
        (
            "  type: temporal\n  rules: [link-down, no-such-rule]\n  timespan: 5m\n",
            6,
            "'no-such-rule' is not a known",
        ),
        (
            "  type: event_count\n  rules: [link-down]\n  group-by: [Data]\n  timespan: 5m\n  condition: {gte: 2}\n",
            7,
            "multi-valued",
        ),
        (
            "  type: event_count\n  rules: [link-down]\n  group-by: [Hostname]\n  timespan: 5m\n  condition: {gte: 2}\n",
            7,
            "unknown field 'Hostname'",
        ),
        ("  type: temporal\n  rules: [link-down, link-up]\n  timespan: 5x\n", 7, "Timespan"),
    ],
)
def test_unsupported_correlations_are_errors_naming_file_and_line(
    tmp_path, body: str, line: int, message: str
) -> None:
    from evtxcorr.ruleset import check_ruleset

    (tmp_path / "sigma").mkdir()
    (tmp_path / "sigma" / "corr.yml").write_text(CORRELATION_HEADER + body, encoding="utf-8")
    errors = [i for i in check_ruleset([BUILTIN_DIR, tmp_path]) if i.severity == "error"]
    assert len(errors) == 1, [str(e) for e in errors]
    assert str(errors[0].location).startswith(f"{tmp_path}/sigma/corr.yml:{line}:"), str(errors[0])
    assert message in errors[0].message


# --- exports without payload: payload tests are neither true nor false (issue 16) -------------------


def _without_payload(row: dict) -> dict:
    """The row as an Event Viewer CSV gives it: provider, event id and time, no payload values."""
    return {**row, "data": (), "data_names": (), "binary": "", "codes": (), "payload_known": False}


def _unknown_hits(detection_yaml: str, rows: list[dict]) -> tuple[list[str], list[str]]:
    """(hosts whose row surely matches, hosts whose row may match)."""
    from evtxcorr.ruleset.sigma import evaluate_unknown

    detection, issues = compile_rule(detection_yaml)
    assert detection is not None, [str(i) for i in issues]
    table = se.frame(rows)
    surely, maybe = evaluate_unknown(FrameView(table, SETTINGS), detection)
    return sorted(table.loc[surely, "host_key"].tolist()), sorted(table.loc[maybe, "host_key"].tolist())


@pytest.mark.parametrize(
    ("detection", "expected"),
    [
        # provider and event id fit, only the payload could tell: possible, never sure
        (
            "  sel: {Provider_Name: NETLOGON, EventID: 5719, Binary: 5E0000C0}\n  condition: sel\n",
            (["hv02"], ["hv01"]),
        ),
        # NOT of a payload test is still unknown (two-valued logic said 'true': a sure match)
        (
            "  sel: {Provider_Name: NETLOGON, EventID: 5719}\n  code: {Binary: 220000C0}\n"
            "  condition: sel and not code\n",
            (["hv02"], ["hv01"]),
        ),
        # no payload test: sure on both
        ("  sel: {Provider_Name: NETLOGON, EventID: 5719}\n  condition: sel\n", (["hv01", "hv02"], [])),
        # an OR whose other branch is surely true: sure
        (
            "  sel: {EventID: 5719}\n  code: {Binary: 220000C0}\n  condition: sel or code\n",
            (["hv01", "hv02"], []),
        ),
        # another event id: neither, whatever the payload
        ("  sel: {EventID: 3210, Binary: 5E0000C0}\n  condition: sel\n", ([], [])),
    ],
)
def test_payload_tests_on_rows_without_payload_are_unknown(detection: str, expected: tuple) -> None:
    rows = [_without_payload(se.netlogon_5719("HV01", 0)), se.netlogon_5719("HV02", 1)]
    assert _unknown_hits(detection, rows) == expected


def test_match_unknown_splits_sure_and_possible_matches_and_correlations_follow(tmp_path) -> None:
    from evtxcorr.ruleset import match_unknown

    ruleset = load_ruleset()
    rows = [_without_payload(se.netlogon_5719("HV01", 0)), _without_payload(se.fc_1228("HV01", 60))]
    table = se.frame(rows)
    surely, maybe = match_unknown(table, ruleset)
    assert surely == match(table, ruleset)
    by_event = {int(table.loc[i, "event_id"]): set(names) for i, names in maybe.items()}
    assert {"netlogon-5719-no-logon-servers", "netlogon-5719-logon-failure"} <= by_event[5719]
    assert "dc-lost-with-cluster-name-error" in by_event[5719]  # the correlation of two possible matches
    assert not any("netlogon-5719-no-logon-servers" in names for names in surely.values())
