"""CSV exports -> records: PowerShell (`Get-WinEvent | Export-Csv`, `| Select-Object ... |
Export-Csv`, `ConvertTo-Csv > file`) and Event Viewer's "Save All Events As... CSV".

Neither carries the payload: PowerShell writes `Properties` as a .NET type name
("System.Collections.Generic.List`1[System.Diagnostics.Eventing.Reader.EventProperty]"), Event
Viewer only the message. Rows are therefore `payload_known` False: they anchor by provider + event
id, and a detection on payload values cannot be checked on them. Times are printed to the second in
the exporting machine's local time and culture ('9/15/2026 2:37:41 PM', '2026/09/15 23:37:41'):
they are read in --source-tz. Event Viewer's CSV names no computer, channel or record id: host and
channel come from the file's name (or folder), the record id is 0.
"""

from __future__ import annotations

import csv
import re
import sys
from collections.abc import Callable, Iterator
from datetime import datetime

from evtxcorr.formats import LEVEL_BY_NAME, csv_flavour, first_line, split_header
from evtxcorr.ledger import InputEntry
from evtxcorr.model import Source
from evtxcorr.parse.exports.common import (
    Failures,
    LocalTimes,
    fill_powershell,
    has_zone,
    head_text,
    host_and_channel,
    open_text,
    parse_iso,
    read_file,
    skeleton,
)

PARSER = "csv-export"
SECOND_US = 1_000_000
csv.field_size_limit(min(sys.maxsize, 1 << 26))  # messages can be long; 64 MiB bounds a broken quote

# Culture date layouts of DateTime.ToString() (short date + long time), as (pattern, group order).
# Order: year, month, day, hour, minute, second, AM/PM marker.
_LOCAL_LAYOUTS: tuple[tuple[re.Pattern[str], tuple[int, ...]], ...] = (
    # en-US: 9/15/2026 2:37:41 PM
    (re.compile(r"^(\d{1,2})/(\d{1,2})/(\d{4}) (\d{1,2}):(\d{2}):(\d{2}) ?([AaPp][Mm])$"), (3, 1, 2, 4, 5, 6, 7)),
    # ja-JP: 2026/09/15 23:37:41 (and 12-hour 2026/09/15 午後 11:37:41)
    (re.compile(r"^(\d{4})/(\d{1,2})/(\d{1,2}) (\d{1,2}):(\d{2}):(\d{2})$"), (1, 2, 3, 4, 5, 6)),
    (re.compile(r"^(\d{4})/(\d{1,2})/(\d{1,2}) (午前|午後) ?(\d{1,2}):(\d{2}):(\d{2})$"), (1, 2, 3, 5, 6, 7, 4)),
    # en-GB, de-DE, fr-FR: 15/09/2026 14:37:41, 15.09.2026 14:37:41 (24-hour: day first)
    (re.compile(r"^(\d{1,2})[/.](\d{1,2})[/.](\d{4}) (\d{1,2}):(\d{2}):(\d{2})$"), (3, 2, 1, 4, 5, 6)),
)  # fmt: skip
_AFTERNOON = {"pm", "午後"}


def _local_time(text: str) -> datetime | None:
    """A culture-printed local time as a naive datetime, or None when no layout fits."""
    text = text.strip()
    for pattern, order in _LOCAL_LAYOUTS:
        match = pattern.match(text)
        if not match:
            continue
        parts = [match.group(i) for i in order]
        year, month, day, hour, minute, second = (int(p) for p in parts[:6])
        if len(parts) == 7:
            hour = hour % 12 + (12 if parts[6].lower() in _AFTERNOON else 0)
        return datetime(year, month, day, hour, minute, second)  # noqa: DTZ001 - local, converted by caller
    return None


def read_time(text: str, local: LocalTimes) -> tuple[datetime, int]:
    """(UTC time, resolution in µs) of a CSV time cell: ISO with or without zone, or a culture's
    short date and long time (local, to the second)."""
    parsed = parse_iso(text, local)
    if parsed is not None:
        return parsed
    naive = _local_time(text)
    if naive is None:
        raise ValueError(f"unreadable time {text!r}")
    return local.to_utc(naive), SECOND_US


def _header(source: Source) -> tuple[str, tuple[str, ...], str] | None:
    """(delimiter, names, flavour) of the file's header row."""
    found = split_header(first_line(head_text(source.path)))
    if found is None:
        return None
    delimiter, names = found
    return delimiter, names, csv_flavour(names) or ""


def needs_zone(source: Source) -> bool:
    """Event Viewer CSV: always; PowerShell CSV: when its first TimeCreated has no zone."""
    header = _header(source)
    if header is None:
        return False
    delimiter, names, flavour = header
    if flavour == "eventviewer":
        return True
    lines = head_text(source.path).lstrip("\ufeff").splitlines()
    rows = csv.reader((line for line in lines if not line.startswith("#TYPE")), delimiter=delimiter)
    next(rows, None)
    first = next(rows, None)
    column = names.index("TimeCreated")
    return bool(first and len(first) > column and first[column].strip() and not has_zone(first[column]))


def _eventviewer_row(row: list[str], record: dict, local: LocalTimes) -> None:
    level, stamp, provider, event_id, task = (cell.strip() for cell in row[:5])
    record["time"], record["time_unit_us"] = read_time(stamp, local)
    record["provider"] = provider
    record["event_id"] = int(event_id)
    record["level"] = LEVEL_BY_NAME.get(level.casefold())
    record["rendered_level"] = level
    record["rendered_task"] = task
    record["rendered_message"] = row[5] if len(row) > 5 else ""
    record["payload_known"] = False


def _powershell_row(cells: dict[str, str], record: dict, local: LocalTimes) -> None:
    record["time"], record["time_unit_us"] = read_time(cells["TimeCreated"], local)
    fill_powershell(record, cells)
    record["payload_known"] = False  # Properties is a type name in any CSV


def _rows(text, delimiter: str) -> Iterator[tuple[int, list[str]]]:  # type: ignore[no-untyped-def]
    """(first line, cells) of every CSV row after the header ('#TYPE' line skipped)."""
    reader = csv.reader(text, delimiter=delimiter)
    start = 1
    header_seen = False
    for row in reader:
        line, start = start, reader.line_num + 1
        if not header_seen:
            if row and row[0].startswith("#TYPE"):
                continue
            header_seen = True
            continue
        if row:
            yield line, row


def _records(source: Source, entry: InputEntry, local: LocalTimes, failures: Failures) -> Iterator[dict]:
    header = _header(source)
    if header is None:
        entry.skip("CSV whose header is no known event export")
        return
    delimiter, names, flavour = header
    host, channel, warning = host_and_channel(source)
    if flavour == "eventviewer":
        if warning:
            entry.warn(warning)
        entry.warn("Event Viewer CSV: no payload values, record ids or computer names (message text only)")
    else:
        entry.warn("PowerShell CSV: no payload values (Properties is only a type name)")
    fill: Callable[[list[str], dict], None]
    if flavour == "eventviewer":
        fill = lambda row, record: _eventviewer_row(row, record, local)  # noqa: E731
    else:
        fill = lambda row, record: _powershell_row(dict(zip(names, row, strict=False)), record, local)  # noqa: E731
    with open_text(source.path, entry, newline="") as text:
        for index, (line, row) in enumerate(_rows(text, delimiter)):
            record = skeleton(entry, PARSER)
            record.update(host=host, channel=channel, chunk=index, offset=line)
            try:
                fill(row, record)
            except (ValueError, KeyError, IndexError) as exc:
                failures.add(f"row {index + 1} (line {line})", str(exc))
                continue
            yield record


def read(source: Source, entry: InputEntry, *, source_tz: str | None = None) -> Iterator[dict]:
    """Records of one CSV export, in file order (`chunk` = row index, `offset` = its first line)."""
    return read_file("csv", _records, source, entry, source_tz, (csv.Error,))
