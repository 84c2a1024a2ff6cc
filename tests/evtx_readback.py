"""Read an .evtx with python-evtx, Rust evtx and libevtx into one normalised shape, for comparisons.

Each reader returns a `Readback`: normalised records (plain dicts, see `_system_from_xml` for the keys,
plus "payload", "header_id" (the record header's id) and, for libevtx, "recovered"), the errors it caught
and kept going past, and libevtx's file-level `corrupted` flag. `expected_records` turns ForgedEvents
into the same shape, so "all three parsers read what was written" is
`strip(read_x(path).records, "recovered") == expected_records(events)`.

python-evtx is read from its typed substitutions (the template rendered once per chunk with
placeholders), not from `record.xml()`: faster, and it avoids its rendering bugs listed below.

Normalised values (`canon`), so that known rendering differences vanish (evtx-format.md):
* GUIDs `{lowercase}` (Rust drops braces and upper-cases, python-evtx lower-cases);
* hex numbers `0x` + minimal lowercase digits (Keywords padding differs);
* timestamps `YYYY-MM-DDTHH:MM:SS.ffffffZ`, truncated to microseconds (python-evtx goes through floats,
  so its TimeCreated is read from the FILETIME integer instead);
* booleans `true`/`false`; reals via float(); Binary as uppercase hex (python-evtx writes base64);
* empty optional attributes (python-evtx `Guid=""`) and absent ones are both None; an empty or absent
  `<Binary>` is None;
* python-evtx's string arrays (one `<Data>` of `<string>` lines, empty strings reordered) are read from
  the substitution value and expanded like Rust and libevtx do: one `<Data>` per string;
* python-evtx's SYSTEMTIME puts milliseconds in the microsecond field; corrected here;
* SIZE_T in hex (Rust's rendering; python-evtx prints decimal, libevtx prints 0x0 for any value);
* a classic record whose string array is NULL (the real EventLog 6005): Rust and Event Viewer show one
  empty `<Data>`, libevtx none; read as one empty `<Data>`.
Not normalised, so tests can see them: libevtx's rendering of negative signed integers (wrong), and
control characters (python-evtx drops them, Rust and libevtx emit them raw: not well-formed XML).
Compared through `as_libevtx_prints`: libevtx prints a value that is exactly one line feed as an empty
element (`<Data/>`; a space, a tab, two line feeds or text around it are printed as they are).
"""

from __future__ import annotations

import copy
import re
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lxml import etree

from evtxcorr.forge.events import Classic, EventData, ForgedEvent, UserData, Value, ValueType

EVENT_NS = "http://schemas.microsoft.com/win/2004/08/events/event"
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)

Record = dict[str, Any]


@dataclass
class Readback:
    records: list[Record] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    corrupted: bool | None = None  # libevtx's file-level corruption flag (None for the other readers)

    @property
    def ids(self) -> list[int]:
        return [r["record_id"] for r in self.records]


# ---- canonical values ---------------------------------------------------------------------------

_GUID = re.compile(r"^\{?([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})\}?$")
_HEX = re.compile(r"^0x[0-9a-fA-F]+$")
_TIME = re.compile(r"^(\d{4}-\d\d-\d\d)[T ](\d\d:\d\d:\d\d)(?:\.(\d+))?(?:Z|\+00:00)?$")
_REAL_EXP = re.compile(r"^-?\d+\.\d+e[+-]\d+$")


def canon(text: str | None) -> str | None:
    """One spelling for values the parsers render differently (idempotent)."""
    if text is None:
        return None
    if m := _GUID.match(text):
        return "{" + m.group(1).lower() + "}"
    if _HEX.match(text):
        return hex(int(text, 16))
    if m := _TIME.match(text):
        fraction = (m.group(3) or "").ljust(6, "0")[:6]
        return f"{m.group(1)}T{m.group(2)}.{fraction}Z"
    if text in ("True", "False"):
        return text.lower()
    if _REAL_EXP.match(text):
        return repr(float(text))
    return text


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _filetime_iso(ticks: int) -> str:
    seconds, rest = divmod(ticks, 10_000_000)
    base = datetime(1601, 1, 1, tzinfo=UTC).timestamp() + seconds
    return _iso(datetime.fromtimestamp(base, UTC).replace(microsecond=rest // 10))


def _int_or_none(text: str | None) -> int | None:
    return None if text in (None, "") else int(text, 0)


def _none_if_empty(text: str | None) -> str | None:
    return None if text in (None, "") else text


# ---- XML (Rust, libevtx, and python-evtx with sentinels) -----------------------------------------


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _find(system: Any, name: str) -> Any:
    return system.find(f"{{{EVENT_NS}}}{name}")


def _text(node: Any) -> str | None:
    return None if node is None else (node.text or "")


def _attr(node: Any, name: str) -> str | None:
    return None if node is None else _none_if_empty(node.get(name))


def _system_from_xml(event: Any) -> Record:
    system = _find(event, "System")
    provider, event_id = _find(system, "Provider"), _find(system, "EventID")
    correlation, execution = _find(system, "Correlation"), _find(system, "Execution")
    time = _find(system, "TimeCreated")
    return {
        "record_id": int(_text(_find(system, "EventRecordID")) or 0),
        "provider": _attr(provider, "Name"),
        "guid": canon(_attr(provider, "Guid")),
        "event_source_name": _attr(provider, "EventSourceName"),
        "event_id": int(_text(event_id) or 0),
        "qualifiers": _int_or_none(_attr(event_id, "Qualifiers")),
        "version": _int_or_none(_text(_find(system, "Version"))),
        "level": _int_or_none(_text(_find(system, "Level"))),
        "task": _int_or_none(_text(_find(system, "Task"))),
        "opcode": _int_or_none(_text(_find(system, "Opcode"))),
        "keywords": canon(_text(_find(system, "Keywords"))),
        "time": canon(_attr(time, "SystemTime")),
        "activity_id": canon(_attr(correlation, "ActivityID")),
        "related_activity_id": canon(_attr(correlation, "RelatedActivityID")),
        "process_id": _int_or_none(_attr(execution, "ProcessID")),
        "thread_id": _int_or_none(_attr(execution, "ThreadID")),
        "channel": _text(_find(system, "Channel")),
        "computer": _text(_find(system, "Computer")),
        "user_id": _attr(_find(system, "Security"), "UserID"),
    }


def _payload_from_xml(node: Any) -> tuple | None:
    if node is None:
        return None
    if _local(node.tag) == "UserData":
        root = node[0] if len(node) else None
        if root is None:
            return ("UserData", None, None, ())
        namespace = root.tag[1:].split("}")[0] if root.tag.startswith("{") else None
        fields = tuple((_local(c.tag), canon(c.text or "")) for c in root)
        return ("UserData", _local(root.tag), namespace, fields)
    fields: list[tuple[str | None, str | None]] = []
    binary = None
    for child in node:
        if _local(child.tag) == "Binary":
            binary = (child.text or "").strip().upper() or None
        else:
            fields.append((child.get("Name"), canon(child.text or "")))
    return ("EventData", node.get("Name"), tuple(fields), binary)


def _record_from_xml(xml: str | bytes) -> Record:
    data = xml.encode("utf-8") if isinstance(xml, str) else xml
    event = etree.fromstring(data, _PARSER)
    record = _system_from_xml(event)
    payload = [c for c in event if _local(c.tag) in ("EventData", "UserData")]
    record["payload"] = _payload_from_xml(payload[0] if payload else None)
    return record


# ---- Rust evtx ----------------------------------------------------------------------------------


def read_rust(path: Path, *, validate_checksums: bool = False) -> Readback:
    """pyevtx-rs `records()`, catching each failing record and continuing (CRCs unchecked by default)."""
    import evtx

    out = Readback()
    iterator = evtx.PyEvtxParser(
        str(path), number_of_threads=1, indent=False, validate_checksums=validate_checksums
    ).records()
    while True:
        try:
            item = next(iterator)
        except StopIteration:
            break
        except Exception as exc:  # the Rust iterator goes on after an error
            out.errors.append(f"{type(exc).__name__}: {exc}")
            if len(out.errors) > 10_000:
                break
            continue
        record = _record_from_xml(item["data"])
        record["header_id"] = item["event_record_id"]
        out.records.append(record)
    return out


# ---- libevtx ------------------------------------------------------------------------------------


def read_libevtx(path: Path, *, recovered: bool = True) -> Readback:
    """pyevtx `records` then `recovered_records`; a failing record is logged and skipped."""
    import pyevtx

    out = Readback()
    handle = pyevtx.file()
    handle.open(str(path))
    out.corrupted = handle.is_corrupted()
    try:
        groups = [("record", handle.number_of_records, handle.get_record)]
        if recovered:
            groups.append(("recovered", handle.number_of_recovered_records, handle.get_recovered_record))
        for kind, count, getter in groups:
            for index in range(count):
                try:
                    item = getter(index)
                    record = _record_from_xml(item.get_xml_string())
                    record["header_id"] = item.identifier
                    payload = record["payload"]
                    if record["guid"] is None and payload and payload[0] == "EventData" and not payload[2]:
                        # a NULL string array (EventLog 6005): libevtx writes no <Data>, Rust one empty
                        record["payload"] = ("EventData", payload[1], ((None, ""),), payload[3])
                except Exception as exc:
                    out.errors.append(f"{kind} {index}: {type(exc).__name__}: {str(exc)[:200]}")
                    continue
                if kind == "recovered":
                    record["recovered"] = True
                out.records.append(record)
    finally:
        handle.close()
    return out


# ---- python-evtx --------------------------------------------------------------------------------


class _Sentinel:
    def __init__(self, index: int) -> None:
        self.index = index

    def string(self) -> str:
        return f"@@SUB{self.index}@@"


_SENTINEL = re.compile(r"^@@SUB(\d+)@@$")


def _py_value(node: Any) -> list[str] | None:
    """A python-evtx substitution as canonical strings (a list: arrays expand); None for NULL."""
    from Evtx import Nodes

    if isinstance(node, Nodes.NullTypeNode):
        return None
    if isinstance(node, Nodes.WstringArrayTypeNode):
        raw = node.binary().decode("utf-16-le", "surrogatepass")
        return raw.split("\0")[:-1] if raw.endswith("\0") else raw.split("\0")
    if isinstance(node, Nodes.BinaryTypeNode):
        return [node.binary().hex().upper()]
    if isinstance(node, Nodes.FiletimeTypeNode):
        return [_filetime_iso(node.unpack_qword(0))]
    if isinstance(node, Nodes.SystemtimeTypeNode):
        year, month, _dow, day, hour, minute, second, ms = struct.unpack("<8H", node.unpack_binary(0, 16))
        return [_iso(datetime(year, month, day, hour, minute, second, ms * 1000, tzinfo=UTC))]
    if isinstance(node, Nodes.SizeTypeNode):
        return [hex(node.num())]  # rendered in hex like Rust (and Event Viewer); python-evtx says decimal
    return [canon(node.string()) or ""]


def _resolve(text: str | None, subs: list) -> list[str] | None:
    """Sentinel text -> the typed value(s); literal text as is."""
    if text is None:
        return None
    m = _SENTINEL.match(text)
    if not m:
        return [canon(text) or ""]
    return _py_value(subs[int(m.group(1))])


def _resolve_tree(node: Any, subs: list) -> None:
    """Replace sentinels in an lxml tree in place; array values duplicate their element."""
    for name, value in list(node.attrib.items()):
        resolved = _resolve(value, subs)
        node.set(name, "" if not resolved else resolved[0])
    for child in list(node):
        _resolve_tree(child, subs)
    resolved = _resolve(node.text, subs) if node.text is not None else None
    if node.text is not None and _SENTINEL.match(node.text) and resolved is not None and len(resolved) != 1:
        parent = node.getparent()
        position = parent.index(node)
        for offset, text in enumerate(resolved):
            copy = etree.Element(node.tag, dict(node.attrib))
            copy.text = text
            parent.insert(position + offset, copy)
        parent.remove(node)
        return
    if node.text is not None:
        node.text = "" if not resolved else resolved[0]


def _sentinel_tree(root: Any, count: int, cache: dict, wrap: bool) -> Any:
    """The template rendered once with `@@SUBi@@` placeholders, parsed; cached per template offset."""
    from Evtx.Views import render_root_node_with_subs

    key = (root.template_instance().template_offset(), wrap)
    if key not in cache:
        xml = render_root_node_with_subs(root, [_Sentinel(i) for i in range(count)])
        if wrap:
            xml = f'<w xmlns="{EVENT_NS}">{xml}</w>'
        cache[key] = etree.fromstring(xml.encode("utf-8"), _PARSER)
    return copy.deepcopy(cache[key])


def _py_record(record: Any, cache: dict, render_xml: bool) -> Record:
    from Evtx import Nodes

    root = record.root()
    subs = root.substitutions()
    event = _sentinel_tree(root, len(subs), cache, wrap=False)
    payload_node = None
    for position, text in enumerate([event.text, *[c.tail for c in event]]):
        m = _SENTINEL.match((text or "").strip())
        if m and isinstance(subs[int(m.group(1))], Nodes.BXmlTypeNode):
            payload_node = subs[int(m.group(1))].root()
        if m:  # drop the sentinel text left in the outer tree
            if position == 0:
                event.text = None
            else:
                event[position - 1].tail = None
    _resolve_tree(event, subs)
    result = _system_from_xml(event)
    result["payload"] = None
    if payload_node is not None:
        inner_subs = payload_node.substitutions()
        inner = _sentinel_tree(payload_node, len(inner_subs), cache, wrap=True)
        for child in inner:
            _resolve_tree(child, inner_subs)
        result["payload"] = _payload_from_xml(inner[0] if len(inner) else None)
    if render_xml:
        record.xml()  # the library's own rendering must not fail either
    result["header_id"] = record.record_num()
    return result


def read_python_evtx(path: Path, *, include_inactive: bool = True, render_xml: bool = False) -> Readback:
    """python-evtx over every chunk with a good magic (or only header-declared ones).

    Values come from the typed substitutions (template rendered once per chunk with placeholders);
    `render_xml=True` also calls `record.xml()` on each record (about 10 ms each).
    """
    import Evtx.Evtx as PyEvtx

    out = Readback()
    with PyEvtx.Evtx(str(path)) as log:
        header = log.get_file_header()
        for number, chunk in enumerate(header.chunks(include_inactive=include_inactive)):
            if not chunk.check_magic():
                out.errors.append(f"chunk {number}: bad magic")
                continue
            cache: dict = {}  # template offsets are chunk-relative
            try:
                for record in chunk.records():
                    try:
                        out.records.append(_py_record(record, cache, render_xml))
                    except Exception as exc:
                        out.errors.append(f"chunk {number} record: {type(exc).__name__}: {exc}")
            except Exception as exc:
                out.errors.append(f"chunk {number}: {type(exc).__name__}: {exc}")
    return out


def read_python_evtx_records(path: Path) -> list[int]:
    """Record ids from python-evtx's default `Evtx.records()` (header-declared chunks only)."""
    import Evtx.Evtx as PyEvtx

    with PyEvtx.Evtx(str(path)) as log:
        return [record.record_num() for record in log.records()]


READERS = {"python-evtx": read_python_evtx, "rust": read_rust, "libevtx": read_libevtx}


# ---- what was written ---------------------------------------------------------------------------


def _expected_value(value: Value) -> list[str]:
    t, v = value.type, value.value
    if v is None or t == ValueType.NULL:
        return [""]
    if t == ValueType.STRING_ARRAY:
        return list(v)  # type: ignore[arg-type]
    if t == ValueType.BINARY:
        return [bytes(v).hex().upper()]  # type: ignore[arg-type]
    if t in (ValueType.HEXINT32, ValueType.HEXINT64, ValueType.SIZE_T):
        return [hex(v)]  # type: ignore[arg-type]
    if t == ValueType.BOOL:
        return ["true" if v else "false"]
    if t in (ValueType.REAL32, ValueType.REAL64):
        return [repr(float(v))]  # type: ignore[arg-type]
    if t == ValueType.FILETIME:
        return [_iso(v)]  # type: ignore[arg-type]
    if t == ValueType.SYSTEMTIME:
        return [_iso(v.replace(microsecond=v.microsecond // 1000 * 1000))]  # type: ignore[union-attr]
    return [canon(str(v)) or ""]


def _expected_payload(event: ForgedEvent) -> tuple:
    payload = event.payload
    if isinstance(payload, Classic):
        fields = tuple((None, canon(s)) for s in payload.strings) or ((None, ""),)
        return ("EventData", None, fields, payload.binary.hex().upper() if payload.binary else None)
    if isinstance(payload, EventData):
        fields = tuple((name, canon(text)) for name, v in payload.fields for text in _expected_value(v))
        binary = payload.binary.hex().upper() if payload.binary else None
        return ("EventData", payload.template_name, fields, binary)
    assert isinstance(payload, UserData)
    fields = tuple((name, canon(text)) for name, v in payload.fields for text in _expected_value(v))
    return ("UserData", payload.root, payload.xmlns, fields)


def expected_records(events: Iterable[ForgedEvent], first_record_id: int = 1) -> list[Record]:
    """The normalised records a faithful parser must return for what the writer was given."""
    out = []
    for number, event in enumerate(events, start=first_record_id):
        record_id = number if event.record_id is None else event.record_id
        classic = event.provider_guid is None
        full = not classic  # manifest and event-source-name templates render these
        out.append(
            {
                "record_id": record_id,
                "provider": event.provider,
                "guid": None if classic else canon(event.provider_guid),
                "event_source_name": None if classic else event.event_source_name,
                "event_id": event.event_id,
                "qualifiers": (event.qualifiers or 0) if classic else event.qualifiers,
                "version": event.version if full else None,
                "level": event.level,
                "task": event.task,
                "opcode": event.opcode if full else None,
                "keywords": hex(event.keywords),
                "time": _iso(event.time),
                "activity_id": canon(event.activity_id) if full else None,
                "related_activity_id": canon(event.related_activity_id) if full else None,
                "process_id": event.process_id if full else None,
                "thread_id": event.thread_id if full else None,
                "channel": event.channel,
                "computer": event.computer,
                "user_id": event.user_sid,
                "payload": _expected_payload(event),
                "header_id": record_id,
            }
        )
    return out


def as_libevtx_prints(records: list[Record]) -> list[Record]:
    """Expected records as libevtx can show them: a payload value of exactly "\\n" is printed empty."""

    def shown(item: object) -> object:
        if isinstance(item, tuple):
            return tuple(shown(part) for part in item)
        return "" if item == "\n" else item

    return [{**record, "payload": shown(record.get("payload"))} for record in records]


def strip(records: list[Record], *keys: str) -> list[Record]:
    """Records without the given keys (e.g. 'recovered')."""
    return [{k: v for k, v in r.items() if k not in keys} for r in records]


__all__ = [
    "READERS",
    "Readback",
    "as_libevtx_prints",
    "canon",
    "expected_records",
    "read_libevtx",
    "read_python_evtx",
    "read_python_evtx_records",
    "read_rust",
    "strip",
]
