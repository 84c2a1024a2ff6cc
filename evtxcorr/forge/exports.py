"""The same forged events written as the exports customers send instead of .evtx (FORMATS):

* xml, xml-ja        Event Viewer "Save All Events As... XML": `<Events>` root, UTF-8, each event
                     with `<RenderingInfo Culture=...>` (Windows' rendered message, level, task);
* xml-wevtutil       `wevtutil qe LOG /f:xml > file`: `<Event>` elements with no root, no rendering;
* csv, csv-ja        `Get-WinEvent | Export-Csv -NoTypeInformation -Encoding UTF8` (en-US), and
                     `Get-WinEvent | ConvertTo-Csv -NoTypeInformation > file` on a ja-JP Windows
                     PowerShell 5.1 (`>` writes UTF-16 LE): every EventLogRecord property,
                     Properties as its type name, TimeCreated in the culture's local format;
* csv-eventviewer, csv-eventviewer-ja
                     Event Viewer "Save All Events As... CSV": Level, Date and Time, Source, Event
                     ID, Task Category and the message, headers and level names localised, UTF-8
                     with BOM, local time;
* json               PowerShell 7 `ConvertTo-Json -Depth 4`: UTF-8, ISO times with the local offset,
                     Properties as {"Value": v};
* json-ps5           Windows PowerShell 5.1 `ConvertTo-Json -Depth 4 > file`: UTF-16 LE,
                     TimeCreated '/Date(ms)/'; `depth_limited=True` writes the default depth 2 (each
                     property only its type name).

Values are printed the way Windows renders them (GUID '{lower}', FILETIME to 100 ns, hex ints
'0x..'), not the way our parser prints them. Local times use `tz`. Message texts come from the
catalogue (English) and templates/events/ja.yaml (Japanese). INFERRED where no real file was seen:
the line breaks between events in the XML files, PowerShell's JSON layout.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from xml.sax.saxutils import escape
from zoneinfo import ZoneInfo

from evtxcorr.forge.catalog import load_catalog, message
from evtxcorr.forge.events import Classic, EventData, ForgedEvent, UserData, Value, ValueType
from evtxcorr.forge.shapes import EVENT_NS
from evtxcorr.formats import EVENTVIEWER_HEADER_ROW, LEVEL_NAMES, POWERSHELL_COLUMNS, TASK_NONE

__all__ = ["FORMATS", "ExportFormat", "write_export"]

CLASSIC_KEYWORD = 0x0080000000000000
UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_INVALID_XML = dict.fromkeys([*range(0, 9), 11, 12, *range(14, 32), 0xFFFE, 0xFFFF], "\ufffd")
TYPE_NAMES = {
    "MatchedQueryIds": "System.UInt32[]",
    "Bookmark": "System.Diagnostics.Eventing.Reader.EventBookmark",
    "KeywordsDisplayNames": "System.Collections.ObjectModel.ReadOnlyCollection`1[System.String]",
    "Properties": "System.Collections.Generic.List`1[System.Diagnostics.Eventing.Reader.EventProperty]",
}
EVENT_PROPERTY = "System.Diagnostics.Eventing.Reader.EventProperty"
OPCODE_INFO = {"en": "Info", "ja": "情報"}


@dataclass(frozen=True)
class Numbered:
    """An event with the record id the .evtx writer gives it."""

    event: ForgedEvent
    record_id: int


# --- how Windows prints things --------------------------------------------------------------------


def _xml_text(text: str) -> str:
    return escape(str(text).translate(_INVALID_XML))


def _attr(text: str) -> str:
    """An attribute value in single quotes, as Windows writes them."""
    return "'" + escape(str(text).translate(_INVALID_XML), {"'": "&apos;", '"': "&quot;"}) + "'"


def _guid(text: str) -> str:
    return "{" + text.strip("{}").lower() + "}"


def _filetime(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"  # 100 ns: 7 digits


def windows_value(value: Value) -> str:
    """A payload value as Event Viewer's XML shows it."""
    v, t = value.value, value.type
    if v is None or t is ValueType.NULL:
        return ""
    if t in (ValueType.HEXINT32, ValueType.HEXINT64):
        return hex(int(v))  # type: ignore[call-overload]
    if t is ValueType.BOOL:
        return "true" if v else "false"
    if t is ValueType.BINARY:
        return bytes(v).hex().upper()  # type: ignore[arg-type]
    if t is ValueType.GUID:
        return _guid(str(v))
    if t in (ValueType.FILETIME, ValueType.SYSTEMTIME):
        return v.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "000Z"  # type: ignore[union-attr]
    return str(v)


def _values(event: ForgedEvent) -> list[str]:
    payload = event.payload
    if isinstance(payload, Classic):
        return list(payload.strings)
    return [windows_value(v) for _, v in payload.fields]


def _message(event: ForgedEvent, lang: str) -> str:
    """Windows' rendered message: the Japanese template where one ships, else the catalogue's."""
    if lang == "ja":
        from evtxcorr.render.messages import event_message  # report words, reused as Windows' words

        text = event_message(event.provider, event.event_id, _values(event), "ja")
        if text:
            return text.replace("\n", "\r\n")
    kinds = {(k.provider, k.event_id): k for k in load_catalog().kinds.values()}
    kind = kinds.get((event.provider, event.event_id))
    named = {"host": event.computer.split(".")[0], "fqdn": event.computer}
    if kind is not None:
        specs = kind.strings if isinstance(event.payload, Classic) else tuple(f.template for f in kind.fields)
        for template, value in zip(specs, _values(event), strict=False):
            if template.startswith("{") and template.endswith("}") and template.count("{") == 1:
                named[template[1:-1]] = value
        text = message(kind, named, load_catalog().inserts)
        if text:
            return text
    return "; ".join(v for v in _values(event) if v)


def _local(moment: datetime, zone: ZoneInfo, culture: str) -> str:
    """DateTime.ToString() in a culture: short date and long time, local time."""
    t = moment.astimezone(zone)
    if culture == "ja":
        return f"{t.year}/{t.month:02d}/{t.day:02d} {t.hour}:{t.minute:02d}:{t.second:02d}"
    hour = t.hour % 12 or 12
    return f"{t.month}/{t.day}/{t.year} {hour}:{t.minute:02d}:{t.second:02d} {'PM' if t.hour >= 12 else 'AM'}"


def _signed64(number: int) -> int:
    return number - (1 << 64) if number >= 1 << 63 else number


def _qualifiers(event: ForgedEvent) -> int | None:
    return 0 if event.is_classic and event.qualifiers is None else event.qualifiers


def _level_name(event: ForgedEvent, lang: str) -> str:
    return LEVEL_NAMES[lang].get(event.level, str(event.level))


# --- XML ------------------------------------------------------------------------------------------


def _system_xml(item: Numbered) -> str:
    e = item.event
    provider = f"<Provider Name={_attr(e.provider)}"
    if e.provider_guid:
        provider += f" Guid={_attr(_guid(e.provider_guid))}"
    if e.event_source_name:
        provider += f" EventSourceName={_attr(e.event_source_name)}"
    qualifiers = _qualifiers(e)
    event_id = f"<EventID{'' if qualifiers is None else f' Qualifiers={_attr(str(qualifiers))}'}>{e.event_id}</EventID>"
    manifest = not e.is_classic
    parts = [provider + "/>", event_id]
    if manifest:
        parts.append(f"<Version>{e.version}</Version>")
    parts += [f"<Level>{e.level}</Level>", f"<Task>{e.task}</Task>"]
    if manifest:
        parts.append(f"<Opcode>{e.opcode}</Opcode>")
    parts += [
        f"<Keywords>0x{e.keywords:x}</Keywords>",
        f"<TimeCreated SystemTime={_attr(_filetime(e.time))}/>",
    ]
    parts.append(f"<EventRecordID>{item.record_id}</EventRecordID>")
    if manifest:
        correlation = "<Correlation"
        if e.activity_id:
            correlation += f" ActivityID={_attr(_guid(e.activity_id))}"
        if e.related_activity_id:
            correlation += f" RelatedActivityID={_attr(_guid(e.related_activity_id))}"
        parts.append(correlation + "/>")
        parts.append(f"<Execution ProcessID={_attr(str(e.process_id))} ThreadID={_attr(str(e.thread_id))}/>")
    parts += [f"<Channel>{_xml_text(e.channel)}</Channel>", f"<Computer>{_xml_text(e.computer)}</Computer>"]
    parts.append(f"<Security UserID={_attr(e.user_sid)}/>" if e.user_sid else "<Security/>")
    return "<System>" + "".join(parts) + "</System>"


def _payload_xml(event: ForgedEvent) -> str:
    payload = event.payload
    if isinstance(payload, Classic):
        data = "".join(f"<Data>{_xml_text(s)}</Data>" for s in payload.strings)
        binary = f"<Binary>{payload.binary.hex().upper()}</Binary>" if payload.binary else ""
        return f"<EventData>{data}{binary}</EventData>"
    if isinstance(payload, EventData):
        name = f" Name={_attr(payload.template_name)}" if payload.template_name else ""
        data = "".join(
            (f"<Data Name={_attr(n)}>" if n is not None else "<Data>")
            + _xml_text(windows_value(v))
            + "</Data>"
            for n, v in payload.fields
        )
        binary = f"<Binary>{payload.binary.hex().upper()}</Binary>" if payload.binary is not None else ""
        return f"<EventData{name}>{data}{binary}</EventData>"
    assert isinstance(payload, UserData)
    inner = "".join(f"<{n}>{_xml_text(windows_value(v))}</{n}>" for n, v in payload.fields)
    return f"<UserData><{payload.root} xmlns={_attr(payload.xmlns)}>{inner}</{payload.root}></UserData>"


def _rendering_xml(event: ForgedEvent, lang: str) -> str:
    culture = "ja-JP" if lang == "ja" else "en-US"
    classic = bool(event.keywords & CLASSIC_KEYWORD)
    keywords = f"<Keyword>{'クラシック' if lang == 'ja' else 'Classic'}</Keyword>" if classic else ""
    opcode = "" if event.is_classic else OPCODE_INFO[lang]
    return (
        f"<RenderingInfo Culture={_attr(culture)}><Message>{_xml_text(_message(event, lang))}</Message>"
        f"<Level>{_xml_text(_level_name(event, lang))}</Level><Task></Task><Opcode>{opcode}</Opcode>"
        f"<Channel>{_xml_text(event.channel)}</Channel><Provider>{_xml_text(event.provider)}</Provider>"
        f"<Keywords>{keywords}</Keywords></RenderingInfo>"
    )


def event_xml(item: Numbered, *, rendering: str | None = None) -> str:
    """One <Event> as Windows renders it (with <RenderingInfo> in language `rendering`, if given)."""
    e = item.event
    tail = _rendering_xml(e, rendering) if rendering else ""
    return f"<Event xmlns={_attr(EVENT_NS)}>{_system_xml(item)}{_payload_xml(e)}{tail}</Event>"


def _write_eventviewer_xml(items: Iterable[Numbered], out: io.TextIOBase, lang: str, zone: ZoneInfo) -> None:
    out.write('<?xml version="1.0" encoding="utf-8" standalone="yes"?>\r\n<Events>')
    for item in items:
        out.write(event_xml(item, rendering=lang) + "\r\n")
    out.write("</Events>\r\n")


def _write_wevtutil(items: Iterable[Numbered], out: io.TextIOBase, lang: str, zone: ZoneInfo) -> None:
    for item in items:
        out.write(event_xml(item) + "\r\n")


# --- CSV ------------------------------------------------------------------------------------------


def _powershell_row(item: Numbered, lang: str, zone: ZoneInfo) -> dict[str, object]:
    """EventLogRecord's properties as PowerShell prints them (None: a null, printed empty)."""
    e = item.event
    classic = bool(e.keywords & CLASSIC_KEYWORD)
    return {
        "Message": _message(e, lang),
        "Id": e.event_id,
        "Version": None if e.is_classic else e.version,
        "Qualifiers": _qualifiers(e),
        "Level": e.level,
        "Task": e.task,
        "Opcode": None if e.is_classic else e.opcode,
        "Keywords": _signed64(e.keywords),
        "RecordId": item.record_id,
        "ProviderName": e.provider,
        "ProviderId": e.provider_guid.strip("{}").lower() if e.provider_guid else None,
        "LogName": e.channel,
        "ProcessId": None if e.is_classic else e.process_id,
        "ThreadId": None if e.is_classic else e.thread_id,
        "MachineName": e.computer,
        "UserId": e.user_sid,
        "TimeCreated": e.time,
        "ActivityId": e.activity_id.strip("{}").lower() if e.activity_id else None,
        "RelatedActivityId": e.related_activity_id.strip("{}").lower() if e.related_activity_id else None,
        "ContainerLog": e.channel,
        "MatchedQueryIds": [],
        "Bookmark": {},
        "LevelDisplayName": _level_name(e, lang),
        "OpcodeDisplayName": None if e.is_classic else OPCODE_INFO[lang],
        "TaskDisplayName": None,
        "KeywordsDisplayNames": ["Classic"] if classic else [],
        "Properties": _properties(e),
    }


def _csv_cell(value: object) -> str | None:
    if value is None:
        return None
    return str(value)


def _write_powershell_csv(items: Iterable[Numbered], out: io.TextIOBase, lang: str, zone: ZoneInfo) -> None:
    """Export-Csv: every value quoted, nulls empty and unquoted, CRLF line ends."""

    def line(cells: Iterable[str | None]) -> str:
        return ",".join("" if c is None else '"' + c.replace('"', '""') + '"' for c in cells) + "\r\n"

    out.write(line(POWERSHELL_COLUMNS))
    for item in items:
        row = _powershell_row(item, lang, zone)
        row["TimeCreated"] = _local(item.event.time, zone, lang)
        row.update({k: v for k, v in TYPE_NAMES.items()})
        out.write(line(_csv_cell(row[c]) for c in POWERSHELL_COLUMNS))


def _write_eventviewer_csv(items: Iterable[Numbered], out: io.TextIOBase, lang: str, zone: ZoneInfo) -> None:
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(EVENTVIEWER_HEADER_ROW[lang])
    for item in items:
        e = item.event
        writer.writerow(
            [_level_name(e, lang), _local(e.time, zone, lang), e.provider, e.event_id, TASK_NONE[lang],
             _message(e, lang)]
        )  # fmt: skip


# --- JSON -----------------------------------------------------------------------------------------


def _sid_object(sid: str) -> dict[str, object]:
    """System.Security.Principal.SecurityIdentifier as ConvertTo-Json prints it."""
    parts = sid.split("-")
    domain = "-".join(parts[:7]) if len(parts) > 7 and parts[3] == "21" else None
    return {"BinaryLength": 8 + 4 * (len(parts) - 3), "AccountDomainSid": domain, "Value": sid}


def _property(value: Value) -> object:
    """An EventProperty's Value as .NET hands it to ConvertTo-Json."""
    v, t = value.value, value.type
    if v is None or t is ValueType.NULL:
        return None
    if t is ValueType.BINARY:
        return list(bytes(v))  # type: ignore[arg-type]
    if t is ValueType.GUID:
        return str(v).strip("{}").lower()
    if t is ValueType.SID:
        return _sid_object(str(v))
    if t in (ValueType.FILETIME, ValueType.SYSTEMTIME):
        return v  # a DateTime: printed by the JSON writer
    return v


def _properties(event: ForgedEvent) -> list[object]:
    payload = event.payload
    if isinstance(payload, Classic):
        values: list[object] = list(payload.strings)
        if payload.binary:
            values.append(list(payload.binary))  # INFERRED: the classic Binary as the last property
        return values
    values = [_property(v) for _, v in payload.fields]
    if isinstance(payload, EventData) and payload.binary is not None:
        values.append(list(payload.binary))
    return values


def _json_time(moment: datetime, zone: ZoneInfo, ps5: bool) -> str:
    """Windows PowerShell: '/Date(ms since 1970)/'; PowerShell 7: local ISO 8601, 7 digits, offset."""
    if ps5:
        return f"/Date({(moment - UNIX_EPOCH) // timedelta(milliseconds=1)})/"
    text = moment.astimezone(zone).isoformat(timespec="microseconds")
    return text[:26] + "0" + text[26:]


def _json_event(
    item: Numbered, lang: str, zone: ZoneInfo, ps5: bool, depth_limited: bool
) -> dict[str, object]:
    row = _powershell_row(item, lang, zone)
    message_text = row.pop("Message")
    if row["UserId"]:
        row["UserId"] = _sid_object(str(row["UserId"]))
    properties = row["Properties"]
    if depth_limited:
        row["Properties"] = [EVENT_PROPERTY for _ in properties]  # type: ignore[union-attr]
    else:
        row["Properties"] = [{"Value": p} for p in properties]  # type: ignore[union-attr]
    row["Message"] = message_text

    def dates(value: object) -> object:
        if isinstance(value, datetime):
            return _json_time(value, zone, ps5)
        if isinstance(value, dict):
            return {k: dates(v) for k, v in value.items()}
        if isinstance(value, list):
            return [dates(v) for v in value]
        return value

    return dates(row)  # type: ignore[return-value]


def _json_writer(ps5: bool) -> Callable[..., None]:
    def write(
        items: Iterable[Numbered], out: io.TextIOBase, lang: str, zone: ZoneInfo, depth_limited: bool = False
    ) -> None:
        separators = (",", ":  ") if ps5 else (",", ": ")
        out.write("[\r\n")
        for index, item in enumerate(items):
            text = json.dumps(_json_event(item, lang, zone, ps5, depth_limited), ensure_ascii=False,
                              indent=4, separators=separators)  # fmt: skip
            out.write(("" if index == 0 else ",\r\n") + text.replace("\n", "\r\n"))
        out.write("\r\n]\r\n")

    return write


# --- the registry ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExportFormat:
    suffix: str
    encoding: str  # Python codec: 'utf-8-sig' writes a BOM, 'utf-16' a UTF-16 LE BOM
    lang: str
    write: Callable[..., None]
    what: str


FORMATS: dict[str, ExportFormat] = {
    "xml": ExportFormat(".xml", "utf-8", "en", _write_eventviewer_xml, "Event Viewer Save as XML (en-US)"),
    "xml-ja": ExportFormat(".xml", "utf-8", "ja", _write_eventviewer_xml, "Event Viewer Save as XML (ja-JP)"),
    "xml-wevtutil": ExportFormat(".xml", "utf-8", "en", _write_wevtutil, "wevtutil qe /f:xml"),
    "csv": ExportFormat(".csv", "utf-8-sig", "en", _write_powershell_csv, "PowerShell Export-Csv (en-US)"),
    "csv-ja": ExportFormat(
        ".csv", "utf-16", "ja", _write_powershell_csv, "PowerShell 5.1 ConvertTo-Csv > (ja-JP)"
    ),
    "csv-eventviewer": ExportFormat(
        ".csv", "utf-8-sig", "en", _write_eventviewer_csv, "Event Viewer Save as CSV"
    ),
    "csv-eventviewer-ja": ExportFormat(
        ".csv", "utf-8-sig", "ja", _write_eventviewer_csv, "Event Viewer Save as CSV (ja-JP)"
    ),
    "json": ExportFormat(".json", "utf-8", "en", _json_writer(False), "PowerShell 7 ConvertTo-Json -Depth 4"),
    "json-ps5": ExportFormat(
        ".json", "utf-16", "en", _json_writer(True), "PowerShell 5.1 ConvertTo-Json > (UTF-16)"
    ),
}


def numbered(events: Iterable[ForgedEvent], first_record_id: int) -> Iterable[Numbered]:
    """Events with the record ids the .evtx writer gives them (in file order from first_record_id)."""
    for index, event in enumerate(events):
        yield Numbered(event, event.record_id if event.record_id is not None else first_record_id + index)


def write_export(
    path: Path,
    events: Iterable[ForgedEvent],
    fmt: str,
    *,
    first_record_id: int = 1,
    tz: str = "UTC",
    encoding: str | None = None,
    **options: object,
) -> Path:
    """Write `events` to `path` (its suffix replaced by the format's) as export format `fmt`."""
    spec = FORMATS[fmt]
    target = Path(path).with_suffix(spec.suffix)
    codec = encoding or spec.encoding
    bom = codec == "utf-16"  # UTF-16 LE with its BOM, whatever this machine's byte order
    with target.open("w", encoding="utf-16-le" if bom else codec, newline="") as out:
        if bom:
            out.write("\ufeff")
        spec.write(numbered(events, first_record_id), out, spec.lang, ZoneInfo(tz), **options)
    return target
