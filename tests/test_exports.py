"""parse/exports/: XML, CSV and JSON exports read back to the records the .evtx gives (issue 16).

Every export is forged from the same scenario as its .evtx (forge/exports.py writes them the way
Event Viewer, wevtutil and PowerShell do) and compared record by record with what the .evtx readers
produce: same positions for payload values, same System fields, times at the export's precision.
"""

from __future__ import annotations

import codecs
import os
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from evtxcorr.analyze import Options, analyze
from evtxcorr.discover.sniff import sniff
from evtxcorr.errors import InputError
from evtxcorr.forge import expand, forge_bundle
from evtxcorr.forge.exports import FORMATS, numbered, write_export
from evtxcorr.ledger import Ledger
from evtxcorr.model import EXPORT_FIELDS, RECORD_FIELDS, Source
from evtxcorr.parse import read_source
from evtxcorr.twins import canonical_payload

SCENARIO = "shared-nic-sole-dc-path"
ZONE = "Asia/Tokyo"
SYSTEM = (
    "host",
    "channel",
    "provider",
    "event_id",
    "qualifiers",
    "level",
    "task",
    "keywords",
    "record_id",
    "user",
)
EXACT = ("opcode", "version", "process_id", "thread_id", "activity_id", "data_names")


def _read(path: Path, source_tz: str | None = ZONE) -> tuple[list[dict], object]:
    ledger = Ledger()
    entry = ledger.add(str(path))
    source = Source(path, str(path), sniff(path), entry_id=entry.id)
    return list(read_source(source, entry, source_tz=source_tz)), entry


def _floor(moment: datetime, unit_us: int) -> datetime:
    return moment.replace(microsecond=moment.microsecond - moment.microsecond % unit_us)


@pytest.fixture(scope="module")
def forged(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:
    root = tmp_path_factory.mktemp("exports")
    out = {"evtx": forge_bundle(SCENARIO, root / "evtx")}
    for fmt in FORMATS:
        out[fmt] = forge_bundle(SCENARIO, root / fmt, format=fmt, tz=ZONE)
    return out


@pytest.fixture(scope="module")
def evtx_records(forged: dict[str, list[Path]]) -> dict[tuple, dict]:
    records = {}
    for path in forged["evtx"]:
        for record in _read(path)[0]:
            records[(record["host"], record["channel"], record["record_id"])] = record
    return records


def _pairs(forged: dict, fmt: str, evtx_records: dict) -> list[tuple[dict, dict]]:
    """(export record, its .evtx record) for every record of the format; all files read cleanly."""
    pairs = []
    for path in forged[fmt]:
        records, entry = _read(path)
        assert entry.status == "ok" and entry.records_failed == 0, (path, entry)
        assert entry.records == len(records) > 0
        for record in records:
            assert set(record) == set(RECORD_FIELDS) | set(EXPORT_FIELDS)
            host = record["host"] if record["record_id"] else None
            pairs.append((record, evtx_records.get((host, record["channel"], record["record_id"]))))
    assert len(pairs) == len(evtx_records)
    return pairs


@pytest.mark.parametrize("fmt", ["xml", "xml-ja", "xml-wevtutil"])
def test_xml_exports_give_the_evtx_records(forged: dict, evtx_records: dict, fmt: str) -> None:
    for record, twin in _pairs(forged, fmt, evtx_records):
        assert twin is not None
        assert record["time"] == twin["time"] and record["time_unit_us"] == 1
        for name in SYSTEM + EXACT:
            assert record[name] == twin[name], (name, record, twin)
        # payload positions as from .evtx; typed values differ only in how Windows prints them
        assert canonical_payload(record["data"], record["binary"]) == canonical_payload(
            twin["data"], twin["binary"]
        )
        assert record["payload_known"] and record["parser"] == "xml-export"
        assert bool(record["rendered_message"]) == (fmt != "xml-wevtutil")


def test_xml_rendering_info_in_japanese(forged: dict, evtx_records: dict) -> None:
    netlogon = [
        r
        for r, _ in _pairs(forged, "xml-ja", evtx_records)
        if (r["provider"], r["event_id"]) == ("NETLOGON", 5719)
    ]
    assert netlogon
    record = netlogon[0]
    assert record["rendered_culture"] == "ja-JP" and record["rendered_level"] == "エラー"
    assert "ドメイン CONTOSO" in record["rendered_message"]  # Windows' text, in Japanese
    assert record["data"] == ("CONTOSO", "%%1311") and record["binary"] == "5E0000C0"  # positions as .evtx


@pytest.mark.parametrize("fmt", ["json", "json-ps5"])
def test_powershell_json_keeps_payload_positions(forged: dict, evtx_records: dict, fmt: str) -> None:
    unit = 1 if fmt == "json" else 1000  # PowerShell 7: 100 ns; Windows PowerShell: '/Date(ms)/'
    strings = 0
    for record, twin in _pairs(forged, fmt, evtx_records):
        assert record["time_unit_us"] == unit and record["time"] == _floor(twin["time"], unit)
        for name in SYSTEM:
            assert record[name] == twin[name], (name, record, twin)
        assert record["payload_known"] and len(record["data"]) == len(twin["data"])
        if twin["provider"] in (
            "NETLOGON",
            "Microsoft-Windows-Hyper-V-High-Availability",
            "Microsoft-Windows-FailoverClustering",
        ):
            assert (record["data"], record["binary"]) == (twin["data"], twin["binary"]), twin
            strings += 1
    assert strings > 20


@pytest.mark.parametrize("fmt", ["csv", "csv-ja"])
def test_powershell_csv_gives_system_fields_not_payload(forged: dict, evtx_records: dict, fmt: str) -> None:
    for record, twin in _pairs(forged, fmt, evtx_records):
        assert record["time_unit_us"] == 1_000_000 and record["time"] == _floor(twin["time"], 1_000_000)
        for name in SYSTEM:
            assert record[name] == twin[name], (name, record, twin)
        assert not record["payload_known"] and record["data"] == () and record["rendered_message"]
    first = forged[fmt][0].read_bytes()
    assert first.startswith(codecs.BOM_UTF16_LE if fmt == "csv-ja" else codecs.BOM_UTF8)


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16"])
def test_event_viewer_csv_in_japanese(tmp_path: Path, evtx_records: dict, encoding: str) -> None:
    """Japanese headers and level names, local times, UTF-8 (as saved) and UTF-16 LE (re-saved by
    Windows PowerShell's `>`): host from the folder, channel from the file name, no payload."""
    events = expand(SCENARIO)[("HV01.contoso.local", "System")]
    folder = tmp_path / "HV01"
    folder.mkdir()
    path = write_export(folder / "System.csv", events, "csv-eventviewer-ja", tz=ZONE, encoding=encoding)
    assert (
        path.read_text(encoding=encoding)
        .lstrip("\ufeff")
        .startswith("レベル,日付と時刻,ソース,イベント ID,タスクのカテゴリ")
    )
    assert sniff(path) == "csv"
    ledger = Ledger()
    entry = ledger.add(str(path))
    source = Source(path, str(path), "csv", channel_hint="System", entry_id=0)
    records = list(read_source(source, entry, source_tz=ZONE))
    assert len(records) == len(events) and entry.source_tz == ZONE
    assert any("folder name 'HV01'" in w for w in entry.warnings)
    by_time = sorted(records, key=lambda r: r["chunk"])
    for record, event in zip(by_time, events, strict=True):
        assert record["time"] == _floor(event.time.astimezone(UTC), 1_000_000)
        assert (record["provider"], record["event_id"], record["level"]) == (
            event.provider,
            event.event_id,
            event.level,
        )
        assert (record["host"], record["channel"], record["record_id"]) == ("HV01", "System", 0)
        assert not record["payload_known"] and record["rendered_task"] == "なし"


def test_local_times_need_source_tz(forged: dict) -> None:
    folder = forged["csv-eventviewer"][0].parents[1]
    with pytest.raises(InputError, match=r"local times with no zone; give --source-tz ZONE"):
        analyze([folder])
    report = analyze([folder], Options(source_tz=ZONE))
    assert {e.source_tz for e in report.ledger.entries} == {ZONE}


def test_export_with_no_evtx_beside_it_is_analysed(forged: dict) -> None:
    report = analyze([forged["xml"][0].parents[1]])
    assert [f.cause for f in report.findings] == [SCENARIO]
    assert report.ledger.totals()["duplicates"] == 0 and all(e.format == "xml" for e in report.ledger.entries)


# --- hostile and damaged exports --------------------------------------------------------------------

EVENT = (
    "<Event xmlns='http://schemas.microsoft.com/win/2004/08/events/event'><System><Provider Name='NETLOGON'/>"
    "<EventID Qualifiers='0'>5719</EventID><Level>2</Level><TimeCreated SystemTime='2026-09-15T14:37:41.5120000Z'/>"
    "<EventRecordID>{n}</EventRecordID><Channel>System</Channel><Computer>HV01</Computer><Security/></System>"
    "<EventData><Data>{data}</Data><Data>%%1311</Data><Binary>5E0000C0</Binary></EventData></Event>\r\n"
)


def test_xml_entities_are_never_expanded(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.xml"
    bomb.write_text(
        '<?xml version="1.0"?><!DOCTYPE Events [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;">'
        '<!ENTITY x SYSTEM "file:///etc/passwd">]><Events>' + EVENT.format(n=1, data="&x;&b;") + "</Events>"
    )
    records, entry = _read(bomb)
    assert records == [] and entry.status == "skipped" and "DOCTYPE" in entry.reason
    stream = tmp_path / "stream.xml"  # a wevtutil stream where an entity reference shows up mid-file
    stream.write_text(EVENT.format(n=1, data="CONTOSO") + EVENT.format(n=2, data="&x;"))
    records, entry = _read(stream)
    assert [r["record_id"] for r in records] == [1] and entry.status == "partial"
    assert "root" not in "".join(str(r["data"]) for r in records)


def test_truncated_xml_keeps_what_was_read(tmp_path: Path) -> None:
    path = tmp_path / "cut.xml"
    text = "<Events>" + "".join(EVENT.format(n=n, data="CONTOSO") for n in range(1, 6)) + "</Events>"
    path.write_text(text[: len(text) - 200])
    records, entry = _read(path)
    assert [r["record_id"] for r in records] == [1, 2, 3, 4]
    assert entry.status == "partial" and "truncated" in entry.reason


def test_powershell_json_at_default_depth_has_no_payload(tmp_path: Path) -> None:
    events = expand(SCENARIO)[("HV01.contoso.local", "System")][:50]
    path = write_export(tmp_path / "System.json", events, "json-ps5", depth_limited=True)
    records, entry = _read(path)
    assert len(records) == 50 and not any(r["payload_known"] for r in records)
    assert any("ConvertTo-Json -Depth 3" in w for w in entry.warnings)


def test_broken_csv_rows_are_counted(tmp_path: Path) -> None:
    path = tmp_path / "System.csv"
    path.write_text(
        '"TimeCreated","Id","ProviderName","MachineName"\r\n'
        '"2026-09-15T14:37:41Z","5719","NETLOGON","HV01"\r\n'
        '"yesterday","5719","NETLOGON","HV01"\r\n'
        '"2026-09-15T14:37:42Z","not a number","NETLOGON","HV01"\r\n',
        encoding="utf-8",
    )
    records, entry = _read(path, source_tz=None)
    assert len(records) == 1 and entry.records_failed == 2 and entry.status == "partial"
    assert any("unreadable time 'yesterday'" in w for w in entry.warnings)


def test_a_large_xml_export_is_read_in_bounded_memory(tmp_path: Path) -> None:
    """About 40 MB of events: the reader's peak memory stays far below what the whole tree costs."""
    path = tmp_path / "big.xml"
    with path.open("w", encoding="utf-8") as out:
        out.write("<Events>")
        for n in range(1, 40_001):
            out.write(EVENT.format(n=n, data="C" * 600))
        out.write("</Events>")
    script = (
        "import resource, sys; from pathlib import Path\n"
        "from evtxcorr.parse.exports import eventxml; from evtxcorr.ledger import Ledger; from evtxcorr.model import Source\n"
        "p = Path(sys.argv[1]); e = Ledger().add(str(p)); before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "n = sum(1 for _ in eventxml.read(Source(p, str(p), 'xml', entry_id=0), e))\n"
        "print(n, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)\n"
    )
    done = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True, check=True,
                          env={**os.environ})  # fmt: skip
    count, grown_kb = (int(v) for v in done.stdout.split())
    assert count == 40_000
    assert grown_kb < 40 * 1024, (
        f"peak memory grew by {grown_kb} KiB reading a {path.stat().st_size >> 20} MiB export"
    )


def test_record_ids_follow_the_evtx_writer() -> None:
    events = [replace(e, record_id=None) for e in expand(SCENARIO)[("HV01.contoso.local", "System")][:3]]
    assert [n.record_id for n in numbered(events, 100)] == [100, 101, 102]
    pinned = [replace(events[0], record_id=7), events[1]]
    assert [n.record_id for n in numbered(pinned, 100)] == [7, 101]


def test_cli_source_tz_and_forge_formats(forged: dict, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from evtxcorr.cli import FORGE_EXPORTS, cli

    assert set(FORGE_EXPORTS) == set(FORMATS)
    folder = str(forged["csv-eventviewer"][0].parents[1])
    runner = CliRunner()
    missing = runner.invoke(cli, ["analyze", folder, "-q", "-f", "json", "-o", str(tmp_path / "r.json")])
    assert missing.exit_code == 1
    errors = [line for line in missing.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "give --source-tz ZONE" in errors[0]
    given = ["analyze", folder, "-q", "--source-tz", ZONE, "-f", "json", "-o", str(tmp_path / "r.json")]
    assert runner.invoke(cli, given).exit_code == 0
    bad = runner.invoke(cli, ["analyze", folder, "--source-tz", "Nowhere/City"])
    assert bad.exit_code == 2 and "not an IANA time zone" in bad.output
