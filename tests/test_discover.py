"""discover/: content sniffing, folders, zips (nested, hostile), layouts, ledger entries."""

from __future__ import annotations

import io
import os
import stat
import threading
import zipfile
from pathlib import Path

import pytest
from archive_builders import SAMPLE, run_discover

from evtxcorr.discover import ArchiveLimits, entry_for
from evtxcorr.discover.layouts import hints
from evtxcorr.discover.sniff import sniff_bytes
from evtxcorr.errors import InputError

EVTX_HEAD = b"ElfFile\x00" + b"\x00" * 4088 + b"ElfChnk\x00"


@pytest.fixture()
def evtx_bytes(corpus_dir: Path) -> bytes:
    return (corpus_dir / SAMPLE).read_bytes()


_run = run_discover


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


@pytest.mark.parametrize(
    ("head", "kind"),
    [
        (EVTX_HEAD, "evtx"),
        (b"\x00" * 4096 + b"ElfChnk\x00", "evtx"),  # damaged file header, chunks intact
        (b"PK\x03\x04rest", "zip"),
        (b"", "empty"),
        (b'"TimeCreated","Id"\r\n', "csv"),  # a PowerShell Select-Object ... | Export-Csv
        (b'"Level","Date"\r\n', "text"),
        (b"\xff\xfeL\x00e\x00", "text"),
        (b"<?xml version='1.0'?><Events/>", "xml"),
        (b"<?xml version='1.0'?><Catalog/>", "xml-other"),
        (b"<Event xmlns='http://schemas.microsoft.com/win/2004/08/events/event'><System>", "xml"),
        ("Level,Date and Time,Source,Event ID,Task Category\r\n".encode("utf-16-le"), "csv"),  # no BOM
        (
            b"\xff\xfe" + "レベル,日付と時刻,ソース,イベント ID,タスクのカテゴリ\r\n".encode("utf-16-le"),
            "csv",
        ),
        ("キーワード,日付と時刻,ソース,イベント ID,タスクのカテゴリ\r\n".encode("cp932"), "csv"),
        (b"Level,Date and Time,Source,Event ID,Task Category\r\nError,", "csv"),
        (b'#TYPE System.Diagnostics.Eventing.Reader.EventLogRecord\r\n"Message","Id","TimeCreated"', "csv"),
        (b'[\r\n    {\r\n        "Message":  "x",', "json"),
        (b'{"Id": 5719, "TimeCreated": "/Date(1)/"}', "json"),
        (b'{"name": "not an event"}', "text"),
        (b"\x00\x01\x02\x03garbage", "unknown"),
    ],
)
def test_sniff_by_content(head: bytes, kind: str) -> None:
    assert sniff_bytes(head) == kind


@pytest.mark.parametrize(
    ("name", "layout", "host", "channel"),
    [
        ("HV01_evt_System.evtx", "tss", "HV01", "System"),
        ("HV01_evt_Microsoft-Windows-FailoverClustering%4Operational.csv", "tss", "HV01",
         "Microsoft-Windows-FailoverClustering/Operational"),
        ("HV01_evt_Microsoft-Windows-FailoverClustering-Operational.csv", "tss", "HV01",
         "Microsoft-Windows-FailoverClustering/Operational"),  # TSS writes '-' for '/'
        ("HV02_UnfilteredEvent_System.EVTX", "sddc", "HV02", "System"),
        ("Microsoft-Windows-FailoverClustering%4Operational.evtx", "winevt", None,
         "Microsoft-Windows-FailoverClustering/Operational"),
        ("Microsoft-Windows-Hyper-V-High-Availability-Admin.evtx", "winevt", None,
         "Microsoft-Windows-Hyper-V-High-Availability-Admin"),
        ("System.evtx", "winevt", None, "System"),
        ("backup_copy.evtx", None, None, None),
    ],
)  # fmt: skip
def test_layout_hints(name: str, layout: str | None, host: str | None, channel: str | None) -> None:
    found = hints(name)
    assert (found.layout, found.host, found.channel) == (layout, host, channel)


def test_folder_mix_every_file_ledgered(tmp_path: Path, evtx_bytes: bytes) -> None:
    root = tmp_path / "in"
    (root / "HV01").mkdir(parents=True)
    (root / "HV01" / "HV01_evt_System.evtx").write_bytes(evtx_bytes)
    (root / "HV01" / "HV01_evt_System.csv").write_text('"Level","Date"\n')
    (root / "HV01" / "notes.txt").write_text("collected by support\n")
    (root / "renamed.dat").write_bytes(evtx_bytes)  # recognised by content, not name
    (root / "empty.evtx").write_bytes(b"")
    (root / "fake.evtx").write_bytes(b"\x00\x01not an event log")
    sources, ledger, entries = _run([root], tmp_path)
    assert [s.display for s in sources] == [f"{root}/HV01/HV01_evt_System.evtx", f"{root}/renamed.dat"]
    assert sources[0].host_hint == "HV01" and sources[0].channel_hint == "System"
    assert len(ledger.entries) == 6
    assert entries[f"{root}/HV01/HV01_evt_System.csv"].reason == (
        "text export of HV01_evt_System.evtx; the .evtx beside it is analysed"
    )
    assert entries[f"{root}/HV01/notes.txt"].reason == ".csv/.txt export copy, not analysed in this version"
    assert entries[f"{root}/empty.evtx"].reason == "empty file"
    assert entries[f"{root}/fake.evtx"].status == "skipped"
    assert entries[f"{root}/fake.evtx"].reason.startswith("not an EVTX file")
    assert entry_for(ledger, sources[1]) is entries[f"{root}/renamed.dat"]


def test_nested_zip_and_zip_slip(tmp_path: Path, evtx_bytes: bytes) -> None:
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as archive:
        archive.writestr("HV01/System.evtx", evtx_bytes)
    bundle = _zip(tmp_path / "a.zip", {"inner.zip": inner.getvalue(), "../../escape.evtx": evtx_bytes,
                                       "/abs/Application.evtx": evtx_bytes})  # fmt: skip
    sources, ledger, entries = _run([bundle], tmp_path)
    displays = [s.display for s in sources]
    assert f"{bundle}!inner.zip!HV01/System.evtx" in displays
    assert f"{bundle}!../../escape.evtx" in displays
    work = (tmp_path / "work").resolve()
    for source in sources:
        assert source.path.resolve().is_relative_to(work)
        assert source.path.read_bytes() == evtx_bytes
    assert not (tmp_path.parent / "escape.evtx").exists() and not Path("/abs/Application.evtx").exists()
    assert any("outside the archive" in w for w in ledger.warnings)
    assert entries[str(bundle)].format == "zip" and entries[f"{bundle}!inner.zip"].format == "zip"


def test_hostile_members_are_skipped_with_reasons(tmp_path: Path, evtx_bytes: bytes) -> None:
    bundle = tmp_path / "b.zip"
    with zipfile.ZipFile(bundle, "w", zipfile.ZIP_DEFLATED) as archive:
        link = zipfile.ZipInfo("link.evtx")
        link.create_system = 3
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(link, "/etc/passwd")
        archive.writestr("bomb.evtx", b"\x00" * (3 * 1024 * 1024))
        archive.writestr("secret.evtx", evtx_bytes)
        archive.writestr("ok.evtx", evtx_bytes)
    raw = bytearray(bundle.read_bytes())  # mark secret.evtx encrypted (flag bit 0), central directory
    central = raw.find(b"PK\x01\x02")
    while central >= 0:
        name_len = int.from_bytes(raw[central + 28 : central + 30], "little")
        if raw[central + 46 : central + 46 + name_len] == b"secret.evtx":
            raw[central + 8] |= 0x1
        central = raw.find(b"PK\x01\x02", central + 4)
    bundle.write_bytes(raw)
    sources, _ledger, entries = _run([bundle], tmp_path)
    assert [s.display for s in sources] == [f"{bundle}!ok.evtx"]
    assert entries[f"{bundle}!link.evtx"].reason.startswith("symbolic link")
    assert "compression ratio" in entries[f"{bundle}!bomb.evtx"].reason
    assert entries[f"{bundle}!secret.evtx"].reason.startswith("encrypted")
    assert all(entries[k].status == "skipped" for k in entries if not k.endswith(("ok.evtx", "b.zip")))


def test_limits_depth_and_total(tmp_path: Path, evtx_bytes: bytes) -> None:
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as archive:
        archive.writestr("x.evtx", evtx_bytes)
    bundle = _zip(
        tmp_path / "c.zip", {"inner.zip": inner.getvalue(), "one.evtx": evtx_bytes, "two.evtx": evtx_bytes}
    )
    sources, _ledger, entries = _run([bundle], tmp_path, max_depth=1)
    assert entries[f"{bundle}!inner.zip"].reason.startswith("zip archive nested deeper than 1")
    assert len(sources) == 2
    limits = ArchiveLimits(max_total=len(evtx_bytes) + len(inner.getvalue()) + 10)
    sources, _ledger, entries = _run([bundle], tmp_path, limits=limits)
    # an archive's members are extracted in name order, then nested archives are opened: inner.zip
    # and one.evtx use up the budget, so two.evtx and inner.zip's x.evtx are left out
    assert [s.display for s in sources] == [f"{bundle}!one.evtx"]
    assert "total limit" in entries[f"{bundle}!two.evtx"].reason
    assert "total limit" in entries[f"{bundle}!inner.zip!x.evtx"].reason


def test_damaged_zip(tmp_path: Path) -> None:
    broken = tmp_path / "broken.zip"
    broken.write_bytes(b"PK\x03\x04" + b"\x00" * 100)
    sources, _ledger, entries = _run([broken], tmp_path)
    assert sources == [] and entries[str(broken)].status == "skipped"
    assert "zip" in entries[str(broken)].reason


def test_missing_path_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file or folder: .*nope"):
        _run([tmp_path / "nope"], tmp_path)


def test_nothing_usable_is_not_an_error(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "readme.md").write_text("hello")
    sources, ledger, entries = _run([tmp_path / "in"], tmp_path)
    assert sources == [] and "no EVTX file found in the inputs" in ledger.warnings
    assert entries[f"{tmp_path / 'in'}/readme.md"].reason == "text file, not EVTX"


def test_same_file_twice_read_once_and_order_is_stable(tmp_path: Path, evtx_bytes: bytes) -> None:
    (tmp_path / "in").mkdir()
    path = tmp_path / "in" / "System.evtx"
    path.write_bytes(evtx_bytes)
    first, ledger, _ = _run([path, tmp_path / "in", path], tmp_path)
    assert len(first) == 1 and any("given more than once" in w for w in ledger.warnings)
    again, _, _ = _run([tmp_path / "in", path], tmp_path)
    assert [s.display for s in first] == [s.display for s in again]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are a POSIX thing")
def test_a_named_pipe_in_a_bundle_is_skipped_not_waited_on(tmp_path: Path, evtx_bytes: bytes) -> None:
    """Opening a FIFO blocks until something writes to it: a bundle holding one (an odd copy tool, a
    hostile archive folder) once hung analyze, timeline and a batch case for ever."""
    bundle = tmp_path / "bundle"
    (bundle / "HV01").mkdir(parents=True)
    (bundle / "HV01" / "System.evtx").write_bytes(evtx_bytes)
    pipe = bundle / "HV01" / "Security.evtx"
    os.mkfifo(pipe)
    found: list = []
    worker = threading.Thread(target=lambda: found.append(_run([bundle, pipe], tmp_path)), daemon=True)
    worker.start()
    worker.join(60)
    if worker.is_alive():  # let the blocked open() return, then fail
        os.close(os.open(pipe, os.O_WRONLY | os.O_NONBLOCK))
        worker.join(10)
        pytest.fail("discover waited on a named pipe")
    sources, ledger, entries = found[0]
    assert [s.display for s in sources] == [f"{bundle}/HV01/System.evtx"]
    skipped = entries[f"{bundle}/HV01/Security.evtx"]
    assert skipped.status == "skipped" and "not a regular file" in skipped.reason
    assert any("given more than once" in w for w in ledger.warnings)
