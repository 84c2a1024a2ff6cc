"""twins.py (table stage): an export beside its .evtx counts once, at the export's precision (issue 16).

One log (HV01's System log of the shared-NIC scenario) is forged as .evtx and as each export, then
read together: the .evtx rows stay, the export rows are counted as duplicates on the export's entry,
a missing payload never makes a conflict, and records of one second that only an export has are kept.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from evtxcorr.discover.sniff import sniff
from evtxcorr.forge import expand
from evtxcorr.forge.exports import write_export
from evtxcorr.forge.writer import write_evtx
from evtxcorr.ledger import Ledger
from evtxcorr.model import Source
from evtxcorr.parse import read_source
from evtxcorr.table import to_frame

ZONE = "Asia/Tokyo"


@pytest.fixture(scope="module")
def events() -> list:
    return expand("shared-nic-sole-dc-path")[("HV01.contoso.local", "System")]


def _table(paths: list[Path]) -> tuple[object, Ledger]:
    ledger = Ledger()
    records = []
    for path in paths:
        entry = ledger.add(str(path))
        source = Source(
            path, str(path), sniff(path), host_hint="HV01", channel_hint="System", entry_id=entry.id
        )
        records += list(read_source(source, entry, source_tz=ZONE))
    return to_frame(records, ledger), ledger


def _evtx(folder: Path, events: list) -> Path:
    path = folder / "System.evtx"
    write_evtx(path, events)
    return path


@pytest.mark.parametrize("fmt", ["xml", "xml-wevtutil", "csv", "csv-eventviewer-ja", "json", "json-ps5"])
def test_export_beside_its_evtx_counts_once(tmp_path: Path, events: list, fmt: str) -> None:
    evtx = _evtx(tmp_path, events)
    export = write_export(tmp_path / "export", events, fmt, tz=ZONE)
    frame, ledger = _table([evtx, export])
    assert len(frame) == len(events)
    assert set(frame["parser"]) == {"evtx"}  # the .evtx wins
    evtx_entry, export_entry = ledger.entries
    assert export_entry.records == export_entry.duplicates == len(events)
    assert evtx_entry.duplicates == 0 and export_entry.conflicts == 0 == evtx_entry.conflicts


def test_an_export_alone_keeps_every_record(tmp_path: Path, events: list) -> None:
    """Event Viewer CSV has no record id and times to the second: records of one second with the same
    provider and id are still distinct records, never collapsed."""
    burst = [replace(events[0], time=events[0].time.replace(microsecond=m)) for m in (1, 2, 3)]
    export = write_export(tmp_path / "System", burst + events, "csv-eventviewer", tz=ZONE)
    frame, ledger = _table([export])
    assert len(frame) == len(events) + 3 and ledger.totals()["duplicates"] == 0
    assert not frame["payload_known"].any() and (frame["record_id"] == 0).all()


def test_two_copies_of_an_export_count_once(tmp_path: Path, events: list) -> None:
    first = write_export(tmp_path / "a", events, "csv-eventviewer", tz=ZONE)
    second = write_export(tmp_path / "b", events, "csv-eventviewer", tz=ZONE)
    frame, ledger = _table([first, second])
    assert len(frame) == len(events) and ledger.entries[1].duplicates == len(events)


def test_finer_export_wins_over_a_coarser_one(tmp_path: Path, events: list) -> None:
    csv = write_export(tmp_path / "a", events, "csv-eventviewer", tz=ZONE)
    xml = write_export(tmp_path / "b", events, "xml")
    frame, ledger = _table([csv, xml])  # the CSV comes first, but the XML is finer: it stays
    assert len(frame) == len(events) and set(frame["parser"]) == {"xml-export"}
    assert ledger.entries[0].duplicates == len(events) and ledger.entries[1].duplicates == 0


def test_an_edited_payload_in_an_xml_export_is_a_conflict(tmp_path: Path, events: list) -> None:
    evtx = _evtx(tmp_path, events)
    index = next(i for i, e in enumerate(events) if e.provider == "NETLOGON")
    edited = list(events)
    edited[index] = replace(
        events[index], payload=replace(events[index].payload, strings=("FABRIKAM", "%%1311"))
    )
    export = write_export(tmp_path / "export", edited, "xml")
    frame, ledger = _table([evtx, export])
    assert len(frame) == len(events) + 1
    assert ledger.entries[1].duplicates == len(events) - 1 and ledger.entries[1].conflicts == 1


def test_a_missing_payload_is_never_a_conflict(tmp_path: Path, events: list) -> None:
    evtx = _evtx(tmp_path, events)
    export = write_export(tmp_path / "export", events, "json-ps5", depth_limited=True)
    frame, ledger = _table([evtx, export])
    assert len(frame) == len(events) and ledger.totals()["conflicts"] == 0
