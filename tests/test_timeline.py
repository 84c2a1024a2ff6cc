"""timeline.py / `evtxcorr timeline`: the merged multi-host table in csv, parquet, jsonl, timesketch."""

from __future__ import annotations

import csv
import json
import os
import stat
import sys
from datetime import datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from evtxcorr import timeline
from evtxcorr.analyze import Options
from evtxcorr.cli import cli
from evtxcorr.forge import forge_bundle
from evtxcorr.timeline import neutralise, write_timeline

SCENARIO = "shared-nic-sole-dc-path"

# Timesketch's importer: "mandatory fields: message, datetime (ISO8601), timestamp_desc"; the file
# name must end in .jsonl. Source: Timesketch documentation, "Create timeline from JSONL or CSV file",
# https://timesketch.org/guides/user/import-from-json-csv/ (google/timesketch:
# docs/guides/user/import-from-json-csv.md), and the importer itself, google/timesketch
# timesketch/lib/utils.py: read_and_validate_jsonl() requires mandatory_fields = ["message", "datetime",
# "timestamp_desc"] on every line, derives `timestamp` as int(parse(datetime).timestamp() * 1000000) when
# it is missing, and drops the fields in FIELDS_TO_REMOVE.
TIMESKETCH_REQUIRED = ("message", "datetime", "timestamp_desc")
TIMESKETCH_SCRUBBED = ("_id", "_type", "_index", "_source", "__ts_timeline_id")


@pytest.fixture(scope="module")
def bundle(bundles_dir: Path) -> Path:
    return bundles_dir / SCENARIO


@pytest.fixture(scope="module")
def every_record(bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[list[dict], object]:
    out = tmp_path_factory.mktemp("timeline") / "timeline.jsonl"
    result = write_timeline([bundle], out, fmt="jsonl")
    return [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()], result


def test_every_record_once_in_time_order_with_provenance(every_record: tuple, bundle: Path) -> None:
    rows, result = every_record
    assert len(rows) == result.rows == 3922 == result.ledger.totals()["records"]
    times = [datetime.fromisoformat(r["time"]) for r in rows]
    assert times == sorted(times)
    assert {r["host"].split(".")[0] for r in rows} == {"HV01", "HV02", "HV03", "HV04"}
    assert all(r["file"].endswith(".evtx") and r["record_id"] > 0 for r in rows)
    netlogon = next(r for r in rows if r["provider"] == "NETLOGON" and r["event_id"] == 5719)
    assert netlogon["data"] == ["CONTOSO", "%%1311"] and "CONTOSO" in netlogon["message"]


def test_small_runs_merge_to_the_same_table(monkeypatch: pytest.MonkeyPatch, every_record: tuple, bundle: Path,
                                            tmp_path: Path) -> None:  # fmt: skip
    monkeypatch.setattr(timeline, "RUN_ROWS", 500)
    out = tmp_path / "t.jsonl"
    backup = tmp_path / "backup-of-System.evtx"
    backup.write_bytes((bundle / "HV01" / "System.evtx").read_bytes())  # the same records, twice
    result = write_timeline([bundle, backup], out, fmt="jsonl")
    assert result.runs > 7
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert rows == every_record[0]
    assert result.duplicates == result.ledger.totals()["records"] - len(rows) > 0


def test_export_beside_its_evtx_is_written_once(tmp_path: Path) -> None:
    forge_bundle(SCENARIO, tmp_path / "evtx")
    forge_bundle(SCENARIO, tmp_path / "csv", format="csv-eventviewer-ja", tz="Asia/Tokyo")
    out = tmp_path / "t.jsonl"
    inputs = [tmp_path / "evtx", tmp_path / "csv"]
    result = write_timeline(inputs, out, fmt="jsonl", options=Options(source_tz="Asia/Tokyo"))
    assert result.rows == 3922 and result.duplicates == 3922


def test_timesketch_lines_have_the_importer_fields(bundle: Path, tmp_path: Path) -> None:
    out = tmp_path / "timeline.jsonl"
    result = write_timeline([bundle], out, fmt="timesketch", matched=True, tz="Asia/Tokyo")
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(lines) == result.rows > 0 and out.suffix == ".jsonl"
    for line in lines:
        assert all(isinstance(line[k], str) and line[k] for k in TIMESKETCH_REQUIRED)
        moment = datetime.fromisoformat(line["datetime"])
        assert moment.utcoffset() is not None and moment.utcoffset().total_seconds() == 9 * 3600
        assert line["timestamp"] == int(moment.timestamp() * 1_000_000)
        assert line["detections"] and line["file"] and line["record_id"] > 0
        assert not set(line) & set(TIMESKETCH_SCRUBBED)  # no field of ours would be dropped on import
    assert any("I1" in line["incidents"] for line in lines)


def test_matched_rows_name_their_detections(bundle: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.csv"
    write_timeline([bundle], out, fmt="csv", matched=True)
    with out.open(encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert rows and all(r["detections"] for r in rows)
    assert any(
        "netlogon-5719-no-logon-servers" in r["detections"].split(" | ") and r["incidents"] == "I1"
        for r in rows
    )


@pytest.mark.parametrize(
    ("cell", "written"),
    [("=HYPERLINK(\"x\")", "'=HYPERLINK(\"x\")"), ("+1", "'+1"), ("-1073741717", "'-1073741717"),
     ("@SUM(A1)", "'@SUM(A1)"), ("\tx", "'\tx"), ("\rx", "'\rx"), ("CONTOSO", "CONTOSO"), ("", "")],
)  # fmt: skip
def test_csv_cells_that_spreadsheets_would_run_are_neutralised(cell: str, written: str) -> None:
    assert neutralise(cell) == written


def test_hostile_event_text_is_neutralised_in_the_csv(tmp_path: Path) -> None:
    src = tmp_path / "System.xml"
    src.write_text(
        "<Events><Event><System><Provider Name='=cmd|calc'/><EventID>1</EventID>"
        "<TimeCreated SystemTime='2026-09-15T14:37:41Z'/><EventRecordID>1</EventRecordID>"
        "<Computer>@evil</Computer></System><EventData><Data>+SUM(1)</Data></EventData></Event></Events>"
    )
    out = tmp_path / "t.csv"
    write_timeline([src], out, fmt="csv")
    with out.open(encoding="utf-8-sig", newline="") as handle:
        row = next(csv.DictReader(handle))
    assert (row["provider"], row["host"], row["data"]) == ("'=cmd|calc", "'@evil", "'+SUM(1)")


def test_parquet_is_a_typed_table(bundle: Path, tmp_path: Path, every_record: tuple) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    out = tmp_path / "t.parquet"
    write_timeline([bundle], out, fmt="parquet", tz="Asia/Tokyo")
    table = pq.read_table(out)
    assert table.num_rows == len(every_record[0])
    assert str(table.schema.field("time").type) == "timestamp[us, tz=Asia/Tokyo]"
    frame = table.to_pandas()
    assert (
        frame["time"].is_monotonic_increasing
        and frame["data"].map(list).iloc[0] == every_record[0][0]["data"]
    )


def test_cli_timeline(bundle: Path, tmp_path: Path) -> None:
    out = tmp_path / "t.csv"
    done = CliRunner().invoke(cli, ["timeline", str(bundle), "-o", str(out), "-q"])
    assert done.exit_code == 0, done.output
    assert (
        out.read_text(encoding="utf-8-sig").splitlines()[0].startswith("time,host,channel,provider,event_id")
    )
    bad = CliRunner().invoke(cli, ["timeline", str(bundle), "-o", str(out), "--tz", "Mars/Base"])
    assert bad.exit_code == 2 and "not an IANA time zone" in bad.output


def test_the_timeline_never_overwrites_or_joins_an_input(bundle: Path, tmp_path: Path) -> None:
    """As for analyze's reports: -o an input (or a hard link to it) or a file inside an input folder is
    refused before anything is read, and the evidence is left as it was."""
    log = tmp_path / "System.evtx"
    log.write_bytes((bundle / "HV01" / "System.evtx").read_bytes())
    before = log.read_bytes()
    (tmp_path / "link.evtx").hardlink_to(log)
    for inputs, out in (([log], log), ([log], tmp_path / "link.evtx"), ([tmp_path], tmp_path / "t.csv")):
        done = CliRunner().invoke(cli, ["timeline", *map(str, inputs), "-o", str(out), "-q"])
        assert done.exit_code == 1, done.output
        assert done.output.startswith("Error: -o ") and "outside the inputs" in done.output
    assert log.read_bytes() == before and not (tmp_path / "t.csv").exists()


def test_timeline_output_errors_are_one_line_naming_the_output(bundle: Path, tmp_path: Path) -> None:
    folder = tmp_path / "a-folder"
    folder.mkdir()
    done = CliRunner().invoke(cli, ["timeline", str(bundle), "-o", str(folder), "-q"])
    assert (done.exit_code, done.output) == (1, f"Error: -o {folder} is a folder; give the file to write\n")
    empty = tmp_path / "empty"
    empty.mkdir()
    done = CliRunner().invoke(cli, ["timeline", str(empty), "-o", str(tmp_path / "t.csv"), "-q"])
    assert done.exit_code == 1 and done.output.startswith("Error: no usable Windows event log")
    assert not (tmp_path / "t.csv").exists()  # no empty timeline that looks like a result


def test_a_timeline_file_gets_the_mode_a_report_gets(bundle: Path, tmp_path: Path) -> None:
    """0666 less the umask, as any new file (not the 0600 of a temporary file); a replaced file keeps
    its mode."""
    out = tmp_path / "t.jsonl"
    old = os.umask(0o027)
    try:
        write_timeline([bundle / "HV01" / "System.evtx"], out, fmt="jsonl")
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == 0o640
    out.chmod(0o604)
    write_timeline([bundle / "HV01" / "System.evtx"], out, fmt="jsonl")
    assert stat.S_IMODE(out.stat().st_mode) == 0o604


def test_parquet_without_pyarrow_is_said_before_any_log_is_read(
    bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # as if not installed: importing it fails
    monkeypatch.setattr(timeline, "_every_record", lambda *args: pytest.fail("read the logs first"))
    done = CliRunner().invoke(
        cli, ["timeline", str(bundle), "-o", str(tmp_path / "t.parquet"), "-f", "parquet"]
    )
    assert (done.exit_code, done.output) == (
        1, "Error: --format parquet needs pyarrow: pip install 'evtxcorr[parquet]'\n"
    )  # fmt: skip
