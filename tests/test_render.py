"""render/: the JSON contract, HTML and Markdown reports, escaping of hostile event text, time zones."""

from __future__ import annotations

import dataclasses
import json
import re
from datetime import UTC, datetime
from typing import Any

import pytest
from jinja2 import StrictUndefined, UndefinedError
from report_factory import CAUSE, HOSTILE, IMG, RLO, RULED_OUT, SCRIPT, make_report

from evtxcorr.errors import EvtxcorrError
from evtxcorr.model import COLUMNS, Evidence
from evtxcorr.render import FORMATS, build_context, context, render, timeline
from evtxcorr.render import messages as words
from evtxcorr.render.env import environment, md_escape, visible

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


def _json(report: Any = None, **kw: Any) -> dict[str, Any]:
    return json.loads(render(report or make_report(), "json", **kw))


def _walk_times(node: Any, key: str = "") -> list[str]:
    if isinstance(node, dict):
        return [t for k, v in node.items() for t in _walk_times(v, k)]
    if isinstance(node, list):
        return [t for v in node for t in _walk_times(v, key)]
    return [node] if key in ("time", "start", "end", "generated") and node is not None else []


# ---- JSON contract -------------------------------------------------------------------------------


def test_json_top_level_contract() -> None:
    out = _json()
    assert list(out)[: len(context.JSON_KEYS)] == list(context.JSON_KEYS)
    assert out["tool"] == "evtxcorr" and out["version"] == "0.1.0" and out["lang"] == "en"
    assert out["totals"] == make_report().ledger.totals()
    assert out["no_finding"] is None


def test_json_inputs_account_for_every_ledger_entry() -> None:
    out = _json()
    ledger = make_report().ledger
    assert [i["path"] for i in out["inputs"]] == [e.path for e in ledger.entries]
    assert list(out["inputs"][0])[:7] == list(context.INPUT_KEYS)
    assert [i["status"] for i in out["inputs"]] == ["ok", "ok", "partial", "ok", "skipped"]
    partial = out["inputs"][2]
    assert (partial["records_failed"], partial["chunks_failed"], partial["duplicates"]) == (4, 1, 2)
    assert partial["reason"].startswith("chunk 9")
    assert out["inputs"][4]["reason"] == "not an event log (text file)"


def test_json_times_are_utc_whatever_the_display_zone() -> None:
    utc, tokyo = _json(), _json(tz="Asia/Tokyo")
    times = _walk_times(utc)
    assert len(times) > 30 and all(ISO_Z.match(t) for t in times), [t for t in times if not ISO_Z.match(t)]
    assert _walk_times(tokyo) == times
    assert tokyo["display_timezone"] == "Asia/Tokyo"
    assert "2026-09-15T14:37:41.512000Z" in times


def test_json_incident_events_carry_full_fields() -> None:
    report = make_report()
    incident = _json()["incidents"][0]
    assert (incident["id"], incident["start"], incident["end"]) == (
        "INC-0001",
        "2026-09-15T14:37:38.204000Z",
        "2026-09-15T14:40:12.500000Z",
    )
    assert len(incident["events"]) == len(report.incidents[0].rows)
    assert [e["time"] for e in incident["events"]] == sorted(e["time"] for e in incident["events"])
    netlogon = next(e for e in incident["events"] if e["event_id"] == 5719)
    assert set(COLUMNS) <= set(netlogon)
    assert netlogon["data"] == ["CONTOSO", "%%1311"] and netlogon["binary"] == "5E0000C0"
    assert (netlogon["record_id"], netlogon["file"], netlogon["level"]) == (
        483112,
        "bundle.zip!HV01/System.evtx",
        2,
    )
    assert netlogon["message"].startswith("This computer was not able to set up a secure session")
    assert netlogon["detections"] == [
        {"id": "netlogon-no-logon-servers", "title": "NETLOGON 5719: no logon servers"}
    ]
    assert netlogon["anchor"] is True
    assert {c["cause"] for c in netlogon["cited"]} == {CAUSE}
    assert netlogon["codes"][0]["code"] == "0xC000005E"


def test_json_code_names_come_from_the_code_table() -> None:
    pytest.importorskip("evtxcorr.codes")
    event = next(e for e in _json()["incidents"][0]["events"] if e["event_id"] == 5719)
    assert event["codes"][0]["name"] == "STATUS_NO_LOGON_SERVERS"
    assert "There are currently no logon servers" in event["message"]


def test_json_without_code_table_keeps_raw_codes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(words, "describe_code", lambda code, lang: None)
    monkeypatch.setattr(context, "describe_code", lambda code, lang: None)
    event = next(e for e in _json()["incidents"][0]["events"] if e["event_id"] == 5719)
    assert event["codes"] == [{"code": "0xC000005E", "name": None, "text": None}]
    assert "%%1311" in event["message"]


def test_json_finding_cites_every_evidence_record() -> None:
    report = make_report()
    finding = _json()["findings"][0]
    assert list(finding)[:9] == [
        "cause",
        "incident",
        "host",
        "confidence",
        "summary",
        "evidence",
        "remedy",
        "verify",
        "title",
    ]
    assert (finding["cause"], finding["incident"], finding["host"], finding["confidence"]) == (
        CAUSE,
        "INC-0001",
        "HV01.contoso.local",  # as the logs write it; the join key stays in host_key
        0.91,
    )
    assert finding["host_key"] == "hv01"
    cited = [(ev.role, row) for ev in report.findings[0].evidence for row in ev.rows]
    assert [(e["role"], e["row"]) for e in finding["evidence"]] == cited
    first = finding["evidence"][0]
    assert {k: first[k] for k in ("provider", "event_id", "time", "host", "file", "record_id")} == {
        "provider": "e1iexpress",
        "event_id": 27,
        "time": "2026-09-15T14:37:38.204000Z",
        "host": "HV01.contoso.local",
        "file": "bundle.zip!HV01/System.evtx",
        "record_id": 483109,
    }
    assert "2026-09-15 14:37:38 UTC" in finding["summary"] and "(91%)" in finding["summary"]
    assert finding["verify"][0].startswith("Get-VMSwitch")
    assert finding["skew"] == {"hv02": 0.42}


def test_json_reasons_one_per_evidence_with_status() -> None:
    finding = _json(lang="ja")["findings"][0]
    assert [r["key"] for r in finding["reasons"]] == [e.key for e in make_report().findings[0].evidence]
    unknown = next(r for r in finding["reasons"] if r["status"] == "unknown")
    assert unknown["description"] == "他のノードは DC セッションを維持"
    assert unknown["note"] == words.messages("ja")["evidence.unknown_missing_log"]
    assert unknown["records"] == []
    assert finding["cannot_show"][1] == "当時のホストのルーティング テーブル。"


def test_json_rejected_says_why() -> None:
    rejected = _json()["rejected"]
    assert [r["cause"] for r in rejected] == [RULED_OUT]
    assert rejected[0]["confidence"] == 0.12
    assert [(r["key"], r["status"]) for r in rejected[0]["why_against"]] == [
        ("all_nodes_5719", "absent"),
        ("link_down", "present"),
    ]


def test_no_finding_is_stated_in_every_format() -> None:
    report = make_report(with_finding=False)
    statement = _json(report)["no_finding"]
    assert statement and statement.startswith("No cause in the rule set matched")
    assert _json(report)["findings"] == []
    assert statement in render(report, "html")
    assert md_escape(statement) in render(report, "md")


def test_missing_row_becomes_a_warning_not_a_crash() -> None:
    report = make_report()
    finding = report.findings[0]
    report.findings[0] = dataclasses.replace(
        finding, evidence=(*finding.evidence, Evidence("supporting", "ghost", "x", "present", 0.1, (999,)))
    )
    out = _json(report)
    assert any("999" in w for w in out["warnings"])
    assert "no Hyper-V-High-Availability-Admin log for HV02 in the bundle" in out["warnings"]


def test_record_without_time_renders() -> None:
    """A damaged record may have no time: it is listed with an empty time, not dropped, not a crash."""
    report = make_report()
    report.frame["time"] = report.frame["time"].astype(object)
    report.frame.loc[8, "time"] = None
    event = next(e for e in _json(report)["incidents"][0]["events"] if e["row"] == 8)
    assert event["time"] is None and event["record_id"] == 483131
    assert "483131" in render(report, "html") and "483131" in render(report, "md")


def test_missing_translation_falls_back_to_english_with_a_warning() -> None:
    report = make_report()
    cause = report.causes[CAUSE]
    report.causes[CAUSE] = dataclasses.replace(cause, remedy={"en": cause.remedy["en"]})
    out = _json(report, lang="ja")
    assert out["findings"][0]["remedy"] == cause.remedy["en"]
    assert any("remedy" in w and "'ja'" in w for w in out["warnings"])


@pytest.mark.parametrize(
    ("kwargs", "text"),
    [
        ({"fmt": "pdf"}, "unknown report format 'pdf'"),
        ({"fmt": "html", "lang": "fr"}, "unknown report language 'fr'"),
        ({"fmt": "html", "tz": "Mars/Olympus"}, "unknown time zone 'Mars/Olympus'"),
    ],
)
def test_bad_arguments_raise_one_clear_error(kwargs: dict[str, str], text: str) -> None:
    fmt = kwargs.pop("fmt")
    with pytest.raises(EvtxcorrError, match=re.escape(text)):
        render(make_report(), fmt, **kwargs)


def test_formats_registry() -> None:
    assert list(FORMATS) == ["html", "md", "json"]
    assert {f.suffix for f in FORMATS.values()} == {".html", ".md", ".json"}


# ---- HTML ------------------------------------------------------------------------------------------


def test_html_is_self_contained() -> None:
    html = render(make_report(), "html")
    assert f'<meta http-equiv="Content-Security-Policy" content="{CSP}">' in html
    assert not re.search(r"<script|<link|<iframe|<img|<object|<embed|@import|url\(", html, re.I)
    assert not re.search(r"\ssrc\s*=", html, re.I)
    hrefs = re.findall(r'href="([^"]*)"', html)
    assert hrefs and all(h.startswith("#") or h.startswith("https://") for h in hrefs), hrefs


def test_html_shows_zone_local_times_and_utc() -> None:
    html = render(make_report(), "html", tz="Asia/Tokyo")
    assert "Asia/Tokyo (UTC+09:00)" in html
    assert "2026-09-15 23:37:41.512" in html and "2026-09-15T14:37:41.512000Z" in html
    assert "Time (Asia/Tokyo)" in html


def test_html_has_every_section_and_cited_record() -> None:
    report = make_report()
    html = render(report, "html")
    for section in ("verdict", "differential", "timeline", "evidence", "inputs", "warnings"):
        assert f'<section id="{section}">' in html
    cited = {row for f in report.findings + report.rejected for ev in f.evidence for row in ev.rows}
    for row in cited:
        assert f'<tr id="rec-{row}">' in html
        record_id = int(report.frame.loc[row, "record_id"])
        assert f'<td class="num">{record_id}</td>' in html
    for entry in report.ledger.entries:
        assert f"<code>{entry.path}</code>" in html
    assert "Get-NetRoute -AddressFamily IPv4 | Sort-Object RouteMetric" in html
    assert 'style="width: 91%"' in html


def test_html_japanese() -> None:
    html = render(make_report(), "html", lang="ja", tz="Asia/Tokyo")
    ja, en = words.messages("ja"), words.messages("en")
    assert '<html lang="ja">' in html
    for key in ("section_verdict", "section_differential", "cannot_show", "role_required"):
        assert ja[key] in html and en[key] not in html
    assert "保護されたネットワークの NIC がホストから DC への唯一の経路だった" in html


def test_html_escapes_hostile_event_text() -> None:
    html = render(make_report(hostile=True), "html")
    for raw in (SCRIPT, IMG, "<img", "onerror=alert(1)>", RLO, "\u202e"):
        assert raw not in html, raw
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&#34;&gt;&lt;img src=x onerror=alert(1)&gt;" in html
    assert "invoice[U+202E]gnp.exe" in html
    assert not re.search(r"href\s*=\s*[\"']?\s*javascript:", html, re.I)
    assert "javascript:alert(document.cookie)" in html  # shown as text


def test_hostile_host_name_is_escaped_in_timeline_and_tables() -> None:
    html = render(make_report(hostile=True), "html")
    assert "HV02&lt;script&gt;" in html
    svg = html[html.index("<svg") : html.index("</svg>")]
    assert "<script" not in svg and "HV02&lt;script&gt;" in svg


# ---- Markdown --------------------------------------------------------------------------------------


def _table_rows(md: str, header_start: str) -> list[str]:
    lines = md.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append(line)
    return rows


def _cells(row: str) -> int:
    return len(re.findall(r"(?<!\\)\|", row)) - 1


def test_markdown_verdict_first_then_evidence() -> None:
    md = render(make_report(), "md")
    lines = [line for line in md.splitlines() if line.strip()]
    assert (
        lines[0]
        == "# evtxcorr incident report: Protected-network NIC was the host's only path to a domain controller"
    )
    assert lines[1].startswith("**Verdict:** Protected-network NIC") and "91%" in lines[1]
    order = [
        md.index(h)
        for h in (
            "## Why",
            "## Remedy",
            "## Verify",
            "## Evidence",
            "## Causes ruled out",
            "## Inputs and accounting",
        )
    ]
    assert order == sorted(order)
    assert "```powershell\nGet-VMSwitch | Select Name, AllowManagementOS" in md


def test_markdown_evidence_table_lists_every_cited_record() -> None:
    report = make_report()
    md = render(report, "md", tz="Asia/Tokyo")
    rows = _table_rows(md, "| Time (Asia/Tokyo)")
    cited = {row for f in report.findings + report.rejected for ev in f.evidence for row in ev.rows}
    assert len(rows) == len(cited)
    assert all(_cells(r) == 8 for r in rows)
    assert (
        "| 2026-09-15 23:37:41.512 | 2026-09-15T14:37:41.512000Z | HV01.contoso.local | NETLOGON | 5719 |"
        in md
    )


def test_markdown_escapes_hostile_event_text() -> None:
    report = make_report(hostile=True)
    md = render(report, "md")
    for raw in ("<script", "<img", "\u202e", "\n# heading"):
        assert raw not in md, raw
    assert not re.search(r"(?<!\\)\]\(javascript", md)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in md
    assert "invoice\\[U+202E\\]gnp.exe" in md
    rows = _table_rows(md, "| Time (UTC)")
    assert all(_cells(r) == 8 for r in rows), [r for r in rows if _cells(r) != 8]
    assert "a\\|b \\`code\\` \\[x\\](javascript:alert(2)) \\*\\*bold\\*\\* # heading" in md


def test_markdown_code_fence_cannot_be_closed_by_its_content() -> None:
    report = make_report()
    cause = report.causes[CAUSE]
    report.causes[CAUSE] = dataclasses.replace(cause, verify=("echo ```", "<b>x</b>"))
    md = render(report, "md")
    assert "````powershell\necho ```\n<b>x</b>\n````" in md


# ---- environment and helpers ------------------------------------------------------------------------


def test_environments_escape_and_are_strict() -> None:
    html_env, md_env = environment(True), environment(False)
    assert html_env.autoescape is True and html_env.undefined is StrictUndefined
    assert md_env.undefined is StrictUndefined
    with pytest.raises(UndefinedError):
        html_env.from_string("{{ missing.key }}").render()
    assert html_env.from_string("{{ x }}").render(x="<b>\u202e") == "&lt;b&gt;[U+202E]"
    assert md_env.from_string("{{ x }}").render(x="<b>|") == "&lt;b&gt;\\|"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plain", "plain"),
        ("a\u202eb", "a[U+202E]b"),
        ("nul\x00", "nul[U+0000]"),
        ("zw\u200bsp", "zw[U+200B]sp"),
        ("line\nbreak\ttab", "line\nbreak\ttab"),
        ("日本語", "日本語"),
    ],
)
def test_visible(text: str, expected: str) -> None:
    assert visible(text) == expected


def test_build_context_view_is_not_in_json() -> None:
    ctx = build_context(make_report(), tz="Europe/Paris")
    assert "view" in ctx and "view" not in json.loads(FORMATS["json"].write(ctx))
    assert ctx["view"]["zone"] == {"name": "Europe/Paris", "offsets": ["+02:00"]}


def test_zone_offsets_across_dst() -> None:
    summer, winter = datetime(2026, 9, 15, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC)
    assert timeline.zone_offsets([summer, winter, summer], "Europe/Paris") == ["+02:00", "+01:00"]
    assert timeline.local_text("2026-12-01T00:00:00.000000Z", "America/New_York") == "2026-11-30 19:00:00.000"


def test_timeline_geometry() -> None:
    ctx = build_context(make_report())
    geometry = ctx["view"]["timelines"]["INC-0001"]
    incident = ctx["incidents"][0]
    assert [lane["host"] for lane in geometry["lanes"]] == incident["hosts"]
    assert len(geometry["marks"]) == len(incident["events"])
    assert all(geometry["plot_left"] <= m["x"] <= geometry["plot_right"] for m in geometry["marks"])
    cited = [m for m in geometry["marks"] if m["cited"]]
    cited_rows = {e["row"] for e in incident["events"] if e["cited"]}
    assert len(cited) == len(geometry["labels"]) == len(cited_rows) == 7
    assert {m["cls"] for m in cited} == {"role-required", "role-supporting"}
    assert len(geometry["ticks"]) >= 3
    for lane in geometry["lanes"]:  # labels in one row of a lane never overlap
        inside = [lb for lb in geometry["labels"] if lane["y"] <= lb["y"] <= lane["y"] + lane["height"]]
        for row in {lb["row"] for lb in inside}:
            spans = sorted(
                (lb["x"], lb["x"] + len(lb["text"]) * timeline.LABEL_CHAR_WIDTH)
                for lb in inside
                if lb["row"] == row
            )
            assert all(a[1] < b[0] for a, b in zip(spans, spans[1:], strict=False)), spans


def _strings(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [s for v in node.values() for s in _strings(v)]
    if isinstance(node, list):
        return [s for v in node for s in _strings(v)]
    return [node] if isinstance(node, str) else []


def test_timeline_lanes_join_short_and_full_host_names() -> None:
    """Incidents may name hosts by host_key ('hv01') while records say 'HV01.contoso.local': one lane each."""
    report = make_report()
    report.incidents[0] = dataclasses.replace(report.incidents[0], hosts=("hv01", "hv02"))
    geometry = build_context(report)["view"]["timelines"]["INC-0001"]
    assert [lane["host"] for lane in geometry["lanes"]] == ["HV01.contoso.local", "HV02.contoso.local"]
    bases = {lane["base"] for lane in geometry["lanes"]}
    assert {m["y"] for m in geometry["marks"]} == bases


@pytest.mark.parametrize("payload", HOSTILE)
def test_payloads_are_kept_verbatim_in_json(payload: str) -> None:
    """JSON is data for other tools: event text stays exactly as recorded (consumers escape it)."""
    assert any(payload in text for text in _strings(_json(make_report(hostile=True))))


def test_japanese_report_of_a_real_bundle_speaks_japanese_in_every_reason(bundles_dir) -> None:  # type: ignore[no-untyped-def]
    """Anchor items repeat records another item already explains in the cause's own words: they are
    left out of the reasons, so no English detection title leaks into a Japanese 'why' table."""
    from evtxcorr.analyze import analyze

    report = analyze([bundles_dir / "shared-nic-sole-dc-path"])
    context = build_context(report, lang="ja")
    reasons = [r for f in context["findings"] + context["rejected"] for r in f["reasons"]]
    assert reasons
    for reason in reasons:
        assert any("\u3040" <= ch <= "\u9fff" for ch in reason["description"]), reason
    cited = {(e["provider"], e["event_id"]) for e in context["findings"][0]["evidence"]}
    assert ("NETLOGON", 5719) in cited  # the records stay cited in the evidence list


def test_one_cause_found_on_every_node_is_one_verdict_listing_the_hosts(bundles_dir) -> None:  # type: ignore[no-untyped-def]
    """A cluster-wide outage is found on each node; the reports show it once (JSON keeps every host)."""
    from evtxcorr.analyze import analyze

    report = analyze([bundles_dir / "dc-unreachable-cluster-wide"])
    hosts = {f.host for f in report.findings}
    assert len(hosts) == 8 and {f.cause for f in report.findings} == {"dc-unreachable-cluster-wide"}
    markdown = render(report, "md")
    assert markdown.count("**Verdict:**") == 1
    line = next(line for line in markdown.splitlines() if line.startswith("Same finding on:"))
    assert all(f"HV0{n}.contoso.local" in markdown for n in range(1, 9)) and line.count("%)") == 7
    html = render(report, "html", lang="ja")
    assert html.count('<article class="finding"') == 1 and "同じ結論のホスト:" in html
    assert len(json.loads(render(report, "json"))["findings"]) == 8
