"""The command line: exit codes, one-line errors, output planning, the JSON contract."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import evtxcorr.analyze  # noqa: F401 - loaded, so that a test can replace its analyze()
from evtxcorr.cli import cli
from evtxcorr.errors import OutputError
from evtxcorr.output import plan_outputs

SHARED_NIC = "shared-nic-sole-dc-path"


def run(*args: str) -> object:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.mark.parametrize(
    "command", [[], ["analyze"], ["forge"], ["forge", "build"], ["rules"], ["rules", "check"]]
)
def test_every_command_has_help_with_an_example(command: list[str]) -> None:
    result = run(*command, "--help")
    assert result.exit_code == 0
    assert "Usage:" in result.output
    if command in ([], ["analyze"], ["forge"], ["rules"]):
        assert "evtxcorr " in result.output.split("Usage:", 1)[1]  # an example invocation


def test_missing_path_is_one_line_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["analyze", str(tmp_path / "nope.zip")])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error:") and "nope.zip" in lines[0]


def test_folder_without_event_logs_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a log")
    result = CliRunner().invoke(cli, ["analyze", str(tmp_path), "-q"])
    assert result.exit_code == 1
    assert (
        "no usable Windows event log" in result.output and "notes.txt: .csv/.txt export copy" in result.output
    )


def test_bad_timezone_is_rejected(bundles_dir: Path) -> None:
    result = CliRunner().invoke(cli, ["analyze", str(bundles_dir / SHARED_NIC), "--tz", "Mars/Olympus"])
    assert result.exit_code == 2
    assert "IANA" in result.output


def test_analyze_writes_three_reports_and_the_json_contract(bundles_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    result = run("analyze", str(bundles_dir / SHARED_NIC), "-o", str(out), "-q")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == [
        "evtxcorr-report.html",
        "evtxcorr-report.json",
        "evtxcorr-report.md",
    ]
    doc = json.loads((out / "evtxcorr-report.json").read_text(encoding="utf-8"))
    assert doc["tool"] == "evtxcorr" and doc["version"]
    for entry in doc["inputs"]:
        assert {"path", "format", "host", "records", "records_failed", "status", "reason"} <= set(entry)
    assert doc["incidents"] and {"id", "start", "end", "hosts", "events"} <= set(doc["incidents"][0])
    finding = next(f for f in doc["findings"] if f["cause"] == SHARED_NIC)
    assert {"incident", "host", "confidence", "summary", "evidence", "remedy", "verify"} <= set(finding)
    assert finding["confidence"] >= 0.8
    for item in finding["evidence"]:
        assert {"role", "provider", "event_id", "time", "host", "file", "record_id"} <= set(item)
        assert item["time"].endswith("Z")
    cited = {(e["provider"], e["event_id"]) for e in finding["evidence"]}
    assert {("NETLOGON", 5719), ("Microsoft-Windows-Hyper-V-High-Availability", 21502)} <= cited


def test_markdown_to_stdout_in_japanese(bundles_dir: Path) -> None:
    result = run("analyze", str(bundles_dir / SHARED_NIC), "--lang", "ja", "-q")
    assert result.exit_code == 0
    assert SHARED_NIC in result.output or "共有" in result.output
    assert any("\u3040" <= ch <= "\u30ff" for ch in result.output)  # kana present


def test_no_finding_still_exits_zero_and_says_so(bundles_dir: Path, tmp_path: Path) -> None:
    target = tmp_path / "r.json"
    result = run("analyze", str(bundles_dir / "noise-only"), "-o", str(target), "-q")
    assert result.exit_code == 0
    doc = json.loads(target.read_text(encoding="utf-8"))
    assert doc["findings"] == []


def test_output_planning(tmp_path: Path) -> None:
    assert plan_outputs(None, ()) == {"md": None}
    assert plan_outputs(tmp_path / "x.json", ()) == {"json": tmp_path / "x.json"}
    assert set(plan_outputs(tmp_path, ())) == {"html", "md", "json"}
    assert plan_outputs(tmp_path / "dir", ("html",)) == {"html": tmp_path / "dir" / "evtxcorr-report.html"}
    with pytest.raises(OutputError):
        plan_outputs(None, ("html", "md"))
    with pytest.raises(OutputError):
        plan_outputs(tmp_path / "x.json", ("html", "md"))


def test_forge_then_analyze_round_trip(tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    result = run("forge", "build", SHARED_NIC, "-o", str(bundle), "--seed", "7", "--zip")
    assert result.exit_code == 0, result.output
    zips = list(bundle.rglob("*.zip")) or list(tmp_path.rglob("*.zip"))
    assert zips
    target = tmp_path / "r.json"
    result = run("analyze", str(zips[0]), "-o", str(target), "-q")
    assert result.exit_code == 0, result.output
    doc = json.loads(target.read_text(encoding="utf-8"))
    assert [f["cause"] for f in doc["findings"]].count(SHARED_NIC) == 1
    assert all("!" in e["path"] for e in doc["inputs"] if e["format"] == "evtx")


def test_rules_check_passes_on_builtin_rules(repo_root: Path) -> None:
    result = run("rules", "check", str(repo_root / "rules"))
    assert result.exit_code == 0, result.output


def test_rules_check_passes_on_a_checkout_copy_next_to_the_installed_rules(
    repo_root: Path, tmp_path: Path
) -> None:
    """A wheel install checks `rules/` of a checkout: same ids and content are not a conflict."""
    import shutil

    shutil.copytree(repo_root / "rules", tmp_path / "rules")
    result = run("rules", "check", str(tmp_path / "rules"))
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "ok"


def test_rules_check_and_the_report_name_a_replaced_builtin_rule(
    tmp_path: Path, committed_bundles: Path
) -> None:
    from evtxcorr.ruleset import builtin_dir

    (tmp_path / "team" / "causes").mkdir(parents=True)
    text = (builtin_dir() / "causes" / "secure-channel-broken.yaml").read_text(encoding="utf-8")
    text = text.replace(
        "id: secure-channel-broken", "id: secure-channel-broken\noverrides: secure-channel-broken"
    )
    (tmp_path / "team" / "causes" / "secure-channel-broken.yaml").write_text(
        text.replace("prior: 0.1", "prior: 0.15")
    )
    checked = run("rules", "check", str(tmp_path / "team"))
    assert checked.exit_code == 0, checked.output
    assert "note: built-in cause 'secure-channel-broken' of " in checked.output
    target = tmp_path / "r.json"
    analysed = run(
        "analyze",
        str(committed_bundles / "noise-only.zip"),
        "--rules",
        str(tmp_path / "team"),
        "-o",
        str(target),
        "-q",
    )
    assert analysed.exit_code == 0, analysed.output
    warnings = json.loads(target.read_text(encoding="utf-8"))["warnings"]
    assert any(
        w.startswith("rules: built-in cause 'secure-channel-broken' of ") and "replaced by" in w
        for w in warnings
    )


def test_rules_list_and_explain() -> None:
    listed = run("rules", "list")
    assert listed.exit_code == 0 and SHARED_NIC in listed.output
    lines = {
        line.split()[0]: line.split()[1:3] for line in listed.output.splitlines() if line.startswith("  ")
    }
    assert lines[SHARED_NIC] == ["host", "cause"]
    assert lines["dc-unreachable-cluster-wide"] == ["cluster", "cause"]
    assert lines["boot-time-dc-not-ready"] == ["host", "benign"]


def test_the_run_summary_names_cluster_verdicts_and_benign_incidents(
    committed_bundles: Path, tmp_path: Path
) -> None:
    outage = CliRunner().invoke(
        cli,
        [
            "analyze",
            str(committed_bundles / "dc-unreachable-cluster-wide.zip"),
            "-o",
            str(tmp_path / "a.json"),
        ],
    )
    assert "finding: dc-unreachable-cluster-wide on the cluster (HV01.contoso.local, " in outage.output
    boot = CliRunner().invoke(
        cli,
        ["analyze", str(committed_bundles / "boot-time-dc-not-ready.zip"), "-o", str(tmp_path / "b.json")],
    )
    assert "explained: 2 incidents as boot-time-dc-not-ready (expected, nothing to do)" in boot.output
    assert "no cause found" in boot.output
    explained = run("rules", "explain", SHARED_NIC)
    assert explained.exit_code == 0 and "Get-VMSwitch" in explained.output


def test_work_dir_holds_extracted_members_only_while_running(committed_bundles: Path, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    target = tmp_path / "r.json"
    zipped = committed_bundles / f"{SHARED_NIC}.zip"
    result = run("analyze", str(zipped), "--work-dir", str(work), "-o", str(target), "-q")
    assert result.exit_code == 0, result.output
    assert list(work.iterdir()) == []
    doc = json.loads(target.read_text(encoding="utf-8"))
    assert [f["cause"] for f in doc["findings"]] == [SHARED_NIC]
    assert all(e["path"].startswith(str(zipped) + "!") for e in doc["inputs"] if e["format"] == "evtx")


# --- issue 15: hostile and broken input ------------------------------------------------------------


def _one_error_line(result) -> str:  # type: ignore[no-untyped-def]
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert "Traceback" not in result.output
    return lines[0]


def test_report_never_overwrites_its_input_and_is_checked_before_parsing(
    bundles_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    same = tmp_path / "same"
    same.mkdir()
    log = same / "System.md"
    log.write_bytes((bundles_dir / SHARED_NIC / "HV01" / "System.evtx").read_bytes())
    before = log.read_bytes()

    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("the analysis ran before -o was checked")

    monkeypatch.setattr(sys.modules["evtxcorr.analyze"], "analyze", never)
    for given in ([str(log)], [str(same)]):
        result = CliRunner().invoke(cli, ["analyze", *given, "-o", str(log)])
        assert result.exit_code == 2
        assert "write the report outside the inputs" in _one_error_line(result)
    assert log.read_bytes() == before


@pytest.mark.parametrize(
    ("target", "formats", "message"),
    [
        ("bundle.zip", [], "is an existing file that is not a report"),
        ("report.txt", [], "has no report suffix"),
        ("x.html", ["--format", "json"], "--format json does not match -o"),
        ("/dev/full", [], "not a regular file or folder"),
    ],
)
def test_bad_output_is_one_line_before_any_work(
    bundles_dir: Path, tmp_path: Path, target: str, formats: list[str], message: str
) -> None:
    (tmp_path / "bundle.zip").write_bytes(b"PK\x05\x06" + b"\x00" * 18)
    path = target if target.startswith("/") else str(tmp_path / target)
    result = CliRunner().invoke(cli, ["analyze", str(bundles_dir / SHARED_NIC), "-o", path, *formats, "-q"])
    assert result.exit_code == 2
    assert message in _one_error_line(result)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle.zip"]  # nothing created, nothing replaced
    assert (tmp_path / "bundle.zip").read_bytes() == b"PK\x05\x06" + b"\x00" * 18


def test_os_error_while_running_is_one_line(tmp_path: Path) -> None:
    locked = tmp_path / "in"
    locked.mkdir()
    (locked / "System.evtx").write_bytes(b"ElfFile\x00")
    result = CliRunner().invoke(cli, ["analyze", str(locked), "--work-dir", "/proc", "-q"])
    assert result.exit_code == 1
    assert _one_error_line(result).startswith("Error: /proc/evtxcorr-")


def test_skip_reasons_reach_the_summary_the_report_and_the_error(bundles_dir: Path, tmp_path: Path) -> None:
    from archive_builders import seven_zip

    log = (bundles_dir / SHARED_NIC / "HV01" / "System.evtx").read_bytes()
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    (mixed / "System.evtx").write_bytes(log)
    seven_zip(mixed / "locked.7z", {"HV02/System.evtx": log}, password="secret")
    (mixed / "cut.evtx").write_bytes(log[:100])
    out = tmp_path / "r.json"
    result = CliRunner().invoke(cli, ["analyze", str(mixed), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert f"  skipped: {mixed}/locked.7z: encrypted 7z archive, cannot be read" in result.stderr
    assert f"  skipped: {mixed}/cut.evtx: shorter than an EVTX file header" in result.stderr
    assert result.stderr.startswith("evtxcorr: 3 files (2 skipped), ")
    inputs = {e["path"]: e for e in json.loads(out.read_text(encoding="utf-8"))["inputs"]}
    assert inputs[f"{mixed}/locked.7z"]["reason"] == "encrypted 7z archive, cannot be read"
    alone = CliRunner().invoke(cli, ["analyze", str(mixed / "locked.7z"), str(mixed / "cut.evtx"), "-q"])
    assert alone.exit_code == 1
    line = _one_error_line(alone)
    assert "encrypted 7z archive, cannot be read" in line and "shorter than an EVTX file header" in line


def test_names_from_the_inputs_cannot_drive_the_terminal(tmp_path: Path) -> None:
    evil = tmp_path / "in"
    evil.mkdir()
    (evil / "x\x1b]0;pwned\x07\x1b[2J\nfinding: fake.evtx").write_bytes(b"\x00\x01junk")
    result = CliRunner().invoke(cli, ["analyze", str(evil)])
    assert result.exit_code == 1
    assert "\x1b" not in result.stderr and "\x07" not in result.stderr
    assert "x\\x1b]0;pwned\\x07\\x1b[2J\\x0afinding: fake.evtx" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("bad", [".HV04", "../HV04", "HV04/x"])
def test_forge_refuses_names_that_leave_its_folder(repo_root: Path, tmp_path: Path, bad: str) -> None:
    shipped = repo_root / "evtxcorr" / "forge" / "scenarios" / f"{SHARED_NIC}.yaml"
    custom = tmp_path / "yaml" / f"{SHARED_NIC}.yaml"
    custom.parent.mkdir()
    custom.write_text(shipped.read_text(encoding="utf-8").replace("HV04", bad), encoding="utf-8")
    out = tmp_path / "deep" / "out"
    result = CliRunner().invoke(cli, ["forge", "build", str(custom), "-o", str(out)])
    assert result.exit_code == 1
    assert "nodes[3].name: must be a host name" in _one_error_line(result)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == [
        "yaml",
        f"yaml/{SHARED_NIC}.yaml",
    ]


ALIAS_BOMB = "\n".join(
    ["a: &a [x, x, x, x, x, x, x, x, x]"]
    + [f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]" for i in range(8)]
    + ["detection: *i", ""]
)


@pytest.mark.parametrize("text", [ALIAS_BOMB, "loop: &l [*l]\n"])
def test_rules_yaml_alias_bomb_is_refused_cheaply(bundles_dir: Path, tmp_path: Path, text: str) -> None:
    rules = tmp_path / "rules" / "sigma"
    rules.mkdir(parents=True)
    (rules / "bomb.yml").write_text(text, encoding="utf-8")
    checked = run("rules", "check", str(rules.parent))
    assert checked.exit_code == 1
    assert f"{rules / 'bomb.yml'}:" in checked.output and "(YAML aliases?)" in checked.output
    result = CliRunner().invoke(cli, ["analyze", str(bundles_dir / SHARED_NIC), "--rules", str(rules.parent)])
    assert result.exit_code == 1 and "(YAML aliases?)" in _one_error_line(result)


def test_the_console_entry_point_freezes_the_heap_before_the_process_ends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The interpreter's last collection then skips what is still alive (0.15 s after a 200 MB run)."""
    import gc

    from evtxcorr.cli import main

    gc.unfreeze()
    monkeypatch.setattr(sys, "argv", ["evtxcorr", "--version"])
    try:
        with pytest.raises(SystemExit) as stop:
            main()
        assert stop.value.code == 0
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
