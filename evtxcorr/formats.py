"""What event-log exports look like, as data: CSV header rows, PowerShell's property names, level
names. discover/sniff.py recognises files with it, parse/exports/ reads them, the forge writes them.

Sources (see README "Input formats"): PowerShell's EventLogRecord properties, in Export-Csv's order
(Microsoft's ConvertTo-Csv example 3 shows the start of the row, a real export the whole row);
Event Viewer's "Save as CSV" header (Level, Date and Time, Source, Event ID, Task Category; the
message is a sixth column with no name), in English and Japanese; the first column is Keywords
instead of Level in logs that show keywords (Security).
"""

from __future__ import annotations

import csv
import io

# Get-WinEvent | Export-Csv -NoTypeInformation: the header row, in order.
POWERSHELL_COLUMNS: tuple[str, ...] = (
    "Message", "Id", "Version", "Qualifiers", "Level", "Task", "Opcode", "Keywords", "RecordId",
    "ProviderName", "ProviderId", "LogName", "ProcessId", "ThreadId", "MachineName", "UserId",
    "TimeCreated", "ActivityId", "RelatedActivityId", "ContainerLog", "MatchedQueryIds", "Bookmark",
    "LevelDisplayName", "OpcodeDisplayName", "TaskDisplayName", "KeywordsDisplayNames", "Properties",
)  # fmt: skip
# A CSV or JSON of events from PowerShell needs at least these (Select-Object may drop the others).
POWERSHELL_REQUIRED = frozenset({"TimeCreated", "Id"})

# Event Viewer "Save All Events As... CSV": header row (first five names) -> language.
EVENTVIEWER_HEADERS: dict[tuple[str, ...], str] = {
    ("Level", "Date and Time", "Source", "Event ID", "Task Category"): "en",
    ("Keywords", "Date and Time", "Source", "Event ID", "Task Category"): "en",
    ("レベル", "日付と時刻", "ソース", "イベント ID", "タスクのカテゴリ"): "ja",
    ("キーワード", "日付と時刻", "ソース", "イベント ID", "タスクのカテゴリ"): "ja",
}
EVENTVIEWER_HEADER_ROW: dict[str, tuple[str, ...]] = {
    "en": ("Level", "Date and Time", "Source", "Event ID", "Task Category"),
    "ja": ("レベル", "日付と時刻", "ソース", "イベント ID", "タスクのカテゴリ"),
}

# Level names as Windows renders them -> System/Level.
LEVEL_NAMES: dict[str, dict[int, str]] = {
    "en": {1: "Critical", 2: "Error", 3: "Warning", 4: "Information", 5: "Verbose", 0: "Information"},
    "ja": {1: "重大", 2: "エラー", 3: "警告", 4: "情報", 5: "詳細", 0: "情報"},
}
LEVEL_BY_NAME: dict[str, int] = {
    name.casefold(): level for names in LEVEL_NAMES.values() for level, name in names.items() if level
}
TASK_NONE: dict[str, str] = {"en": "None", "ja": "なし"}  # Task Category of an event without one

CSV_DELIMITERS = (",", ";", "\t")  # ConvertTo-Csv -UseCulture writes the culture's list separator


def split_header(line: str) -> tuple[str, tuple[str, ...]] | None:
    """(delimiter, column names) when `line` is a known export header row, else None."""
    for delimiter in CSV_DELIMITERS:
        try:
            names = tuple(n.strip() for n in next(csv.reader(io.StringIO(line), delimiter=delimiter)))
        except (csv.Error, StopIteration):
            continue
        if csv_flavour(names):
            return delimiter, names
    return None


def csv_flavour(names: tuple[str, ...]) -> str | None:
    """'eventviewer' or 'powershell' for a CSV header row, else None."""
    if tuple(names[:5]) in EVENTVIEWER_HEADERS and len(names) <= 6:
        return "eventviewer"
    if set(names) >= POWERSHELL_REQUIRED:
        return "powershell"
    return None


def first_line(text: str) -> str:
    """The header line of a CSV export's text: a '#TYPE ...' line (Export-Csv without
    -NoTypeInformation in Windows PowerShell) is skipped."""
    lines = text.lstrip("\ufeff").splitlines()
    while lines and (lines[0].startswith("#TYPE") or not lines[0].strip()):
        lines.pop(0)
    return lines[0] if lines else ""
