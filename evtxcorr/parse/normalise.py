"""Event XML (an lxml tree) -> one record dict with model.RECORD_FIELDS, the same for every backend.

The Rust backend hands over XML text; the python-evtx backend builds the lxml tree itself (pure.py)
with values already formatted the way the Rust parser prints them. Both then go through
`element_to_record`, so whatever differs between them is confined to the value formatting, and the
forms in model.RECORD_FIELDS (padding, case, braces, empty-versus-absent) are decided here only.
Namespaces are ignored: elements are matched by local name.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from lxml import etree

# Entities are never resolved, nothing is fetched, trees stay bounded (event data is attacker text).
SAFE_PARSER = etree.XMLParser(
    resolve_entities=False, no_network=True, huge_tree=False, remove_blank_text=False, load_dtd=False
)

FILETIME_EPOCH = datetime(1601, 1, 1, tzinfo=UTC)
_EVENT_XMLNS = ' xmlns="http://schemas.microsoft.com/win/2004/08/events/event"'
_ISO_TIME = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?\s*(?:Z|UTC|[+-]00:?00)?(?:\s*UTC)?$"
)
_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


class RecordFormatError(ValueError):
    """The XML is not an event record (no System, no EventID or EventRecordID...)."""


def local(tag: object) -> str:
    """Local name of an lxml tag ('' for comments and processing instructions)."""
    if not isinstance(tag, str):
        return ""
    return tag.rsplit("}", 1)[-1].rsplit(":", 1)[-1]


def xml_safe(text: str) -> str:
    """`text` as it comes out of an XML parser: characters XML 1.0 cannot carry replaced by U+FFFD
    (a visible marker) and line ends normalised to LF (XML 1.0 section 2.11)."""
    return _XML_INVALID.sub("\ufffd", text.replace("\r\n", "\n").replace("\r", "\n"))


def filetime_to_datetime(ticks: int) -> datetime:
    """FILETIME (100 ns ticks since 1601) -> aware UTC datetime, truncated to the microsecond."""
    return FILETIME_EPOCH + timedelta(microseconds=ticks // 10)


def format_time(moment: datetime) -> str:
    """The Rust parser's TimeCreated form: '2017-07-12T17:16:28.214161Z'."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str) -> datetime:
    """ISO-like timestamp (any fraction length, 'Z' or none) -> aware UTC datetime, microseconds."""
    if len(text) == 27 and text[-1] == "Z":  # the Rust form, '2017-07-12T17:16:28.214161Z'
        try:
            return datetime.fromisoformat(text)
        except ValueError:
            pass
    match = _ISO_TIME.match(text.strip())
    if not match:
        raise RecordFormatError(f"unreadable SystemTime {text!r}")
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    micro = int((match.group(7) or "0")[:6].ljust(6, "0"))
    return datetime(year, month, day, hour, minute, second, micro, tzinfo=UTC)


def _int_or_none(text: str | None) -> int | None:
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        text = text.strip()
        if not text:
            return None
        return int(text, 16) if text[:2].lower() == "0x" else int(text)


def _keywords(text: str | None) -> str:
    text = (text or "").strip()
    return hex(int(text, 16)) if text else ""


def _guid(text: str | None) -> str:
    text = (text or "").strip().strip("{}").upper()
    return "{" + text + "}" if text else ""


def _text(el: etree._Element | None) -> str:
    """All text inside `el` (its own text when it has no children: the common, fast case)."""
    if el is None:
        return ""
    if len(el) == 0:
        return el.text or ""
    return "".join(el.itertext())


def _by_name(el: etree._Element) -> dict[str, etree._Element]:
    """First child element of each local name (one pass; comments and PIs left out)."""
    out: dict[str, etree._Element] = {}
    for child in el:
        tag = child.tag
        if isinstance(tag, str):
            name = tag[tag.rfind("}") + 1 :]
            if name not in out:
                out[name] = child
    return out


def _payload(parts: dict[str, etree._Element]) -> tuple[tuple[str, ...], tuple[str, ...], str]:
    """(data, data_names, binary) from EventData or, failing that, the UserData root's children."""
    values: list[str] = []
    names: list[str] = []
    binary = ""
    container = parts.get("EventData")
    named_by_attribute = container is not None
    if container is None and "UserData" in parts:
        container = next((c for c in parts["UserData"] if isinstance(c.tag, str)), None)
    if container is None:
        return (), (), ""
    for child in container:
        tag = child.tag
        if not isinstance(tag, str):
            continue
        name = tag[tag.rfind("}") + 1 :]
        if named_by_attribute and name == "Binary":
            binary = binary or "".join(_text(child).split()).upper()
            continue
        values.append(_text(child))
        names.append(child.get("Name", "") if named_by_attribute and name == "Data" else name)
    return tuple(values), tuple(names), binary


def element_to_record(event: etree._Element, *, written: datetime | str | None = None) -> dict[str, object]:
    """The RECORD_FIELDS of one <Event> element, except file/chunk/offset/parser (the caller's).

    `written` (the record header's time, or its text, parsed only when needed) stands in when
    TimeCreated is missing.
    """
    parts = _by_name(event)
    system_el = parts.get("System")
    if system_el is None:
        raise RecordFormatError("no <System> element")
    system = _by_name(system_el)
    event_id_el = system.get("EventID")
    record_id_el = system.get("EventRecordID")
    if event_id_el is None or record_id_el is None:
        raise RecordFormatError("no EventID or EventRecordID")
    created = system.get("TimeCreated")
    stamp = created.get("SystemTime", "") if created is not None else ""
    if stamp.strip():
        time = parse_time(stamp)
    elif written is not None:
        time = parse_time(written) if isinstance(written, str) else written
    else:
        raise RecordFormatError("no TimeCreated")
    execution = system.get("Execution")
    security = system.get("Security")
    correlation = system.get("Correlation")
    provider = system.get("Provider")
    data, data_names, binary = _payload(parts)
    try:
        event_id = int(_text(event_id_el))
        record_id = int(_text(record_id_el))
    except ValueError as exc:
        raise RecordFormatError(f"unreadable EventID or EventRecordID: {exc}") from exc
    return {
        "time": time,
        "host": _text(system.get("Computer")),
        "channel": _text(system.get("Channel")),
        "provider": provider.get("Name", "") if provider is not None else "",
        "event_id": event_id,
        "qualifiers": _int_or_none(event_id_el.get("Qualifiers")),
        "level": _int_or_none(_text(system.get("Level"))),
        "task": _int_or_none(_text(system.get("Task"))),
        "opcode": _int_or_none(_text(system.get("Opcode"))),
        "version": _int_or_none(_text(system.get("Version"))),
        "keywords": _keywords(_text(system.get("Keywords"))),
        "record_id": record_id,
        "process_id": _int_or_none(execution.get("ProcessID")) if execution is not None else None,
        "thread_id": _int_or_none(execution.get("ThreadID")) if execution is not None else None,
        "user": (security.get("UserID", "") if security is not None else "").strip(),
        "activity_id": _guid(correlation.get("ActivityID")) if correlation is not None else "",
        "data": data,
        "data_names": data_names,
        "binary": binary,
    }


# The Rust backend's form of most events, read by one regular expression (_rust_form) instead of lxml.
# Text and attribute values hold nothing an XML parser would change or refuse: no markup or reference
# characters, no CR (line ends are normalised), no tab or LF in attributes (normalised to spaces), no
# character XML 1.0 excludes. Anything else, and every other element or attribute, goes to lxml.
_BAD = "\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f\\ufffe\\uffff"
_T = f"[^<>&\\r{_BAD}]*"  # element text
_A = f'[^<>&"\\t\\n\\r{_BAD}]*'  # attribute value
_N = "[A-Za-z_][A-Za-z0-9_.-]*"  # element name, without prefix
_RUST_FORM = re.compile(
    '<\\?xml version="1\\.0" encoding="utf-8"\\?>\\n'
    '<Event xmlns="http://schemas\\.microsoft\\.com/win/2004/08/events/event"><System>'
    f'<Provider(?: Name="(?P<provider>{_A})")?(?: Guid="{_A}")?(?: EventSourceName="{_A}")?></Provider>'
    f'<EventID(?: Qualifiers="(?P<qualifiers>{_A})")?>(?P<event_id>{_T})</EventID>'
    f"(?:<Version>(?P<version>{_T})</Version>)?"
    f"(?:<Level>(?P<level>{_T})</Level>)?"
    f"(?:<Task>(?P<task>{_T})</Task>)?"
    f"(?:<Opcode>(?P<opcode>{_T})</Opcode>)?"
    f"(?:<Keywords>(?P<keywords>{_T})</Keywords>)?"
    f'<TimeCreated SystemTime="(?P<time>{_A})"></TimeCreated>'
    f"<EventRecordID>(?P<record_id>{_T})</EventRecordID>"
    f'(?:<Correlation(?: ActivityID="(?P<activity>{_A})")?(?: RelatedActivityID="{_A}")?></Correlation>)?'
    f'(?:<Execution ProcessID="(?P<process>{_A})" ThreadID="(?P<thread>{_A})"></Execution>)?'
    f"(?:<Channel>(?P<channel>{_T})</Channel>)?"
    f"(?:<Computer>(?P<host>{_T})</Computer>)?"
    f'(?:<Security(?: UserID="(?P<user>{_A})")?></Security>)?'
    "</System>"
    f'(?:<EventData>(?P<data>(?:<Data(?: Name="{_A}")?>{_T}</Data>)*)(?:<Binary>(?P<binary>{_T})</Binary>)?'
    "</EventData>"
    f'|<UserData><(?P<root>{_N})(?: xmlns="{_A}")?>(?P<user_data>(?:<(?P<child>{_N})>{_T}</(?P=child)>)*)</(?P=root)></UserData>)?'
    "</Event>"
)
_DATA = re.compile(f'<Data(?: Name="({_A})")?>({_T})</Data>')
_USER_DATA = re.compile(f"<({_N})>({_T})</\\1>")


_GROUPS = ("provider", "qualifiers", "event_id", "version", "level", "task", "opcode", "keywords", "time")
_GROUPS += (
    "record_id",
    "activity",
    "process",
    "thread",
    "channel",
    "host",
    "user",
    "data",
    "binary",
    "user_data",
)


def _number(text: str | None) -> int | None:
    """_int_or_none() of decimal text (anything else raises: _rust_form then leaves it to lxml)."""
    return int(text) if text else None


def _rust_form(xml: str) -> dict[str, object] | None:
    """element_to_record() of `xml` when it is in the Rust backend's usual form; None when it is not, or
    when a value does not read (lxml then reads it, and raises what element_to_record raises)."""
    match = _RUST_FORM.fullmatch(xml)
    if match is None:
        return None
    (provider, qualifiers, event_id, version, level, task, opcode, keywords, stamp) = match.group(
        *_GROUPS[:9]
    )
    (record_id, activity, process, thread, channel, host, user, data, binary, user_data) = match.group(
        *_GROUPS[9:]
    )
    if not stamp.strip():
        return None
    try:
        if data is not None:
            pairs = _DATA.findall(data)
            binary = "".join(binary.split()).upper() if binary else ""
        else:
            pairs = _USER_DATA.findall(user_data) if user_data is not None else []
            binary = ""
        return {
            "time": parse_time(stamp),
            "host": host or "",
            "channel": channel or "",
            "provider": provider or "",
            "event_id": int(event_id),
            "qualifiers": _number(qualifiers),
            "level": _number(level),
            "task": _number(task),
            "opcode": _number(opcode),
            "version": _number(version),
            "keywords": _keywords(keywords),
            "record_id": int(record_id),
            "process_id": _number(process),
            "thread_id": _number(thread),
            "user": (user or "").strip(),
            "activity_id": _guid(activity),
            "data": tuple([value for _name, value in pairs]),
            "data_names": tuple([name for name, _value in pairs]),
            "binary": binary,
        }
    except Exception:  # noqa: BLE001 - lxml's reading raises the error element_to_record gives
        return None


def xml_to_record(xml: str | bytes, *, written: datetime | str | None = None) -> dict[str, object]:
    """Parse one event's XML with the safe parser and normalise it (see element_to_record)."""
    if isinstance(xml, bytes):
        xml = xml.decode("utf-8", errors="replace")
    record = _rust_form(xml)
    if record is not None:
        return record
    # Element names are matched by local name; without the default namespace lxml builds them faster.
    xml = xml.replace(_EVENT_XMLNS, "", 1)
    try:
        root = etree.fromstring(xml.encode("utf-8"), SAFE_PARSER)
    except etree.XMLSyntaxError:
        # Control characters written raw by the backend; mark them as xml_safe does and retry.
        try:
            root = etree.fromstring(_XML_INVALID.sub("\ufffd", xml).encode("utf-8"), SAFE_PARSER)
        except etree.XMLSyntaxError as exc:
            raise RecordFormatError(f"event XML does not parse: {exc}") from exc
    if local(root.tag) != "Event":
        raise RecordFormatError(f"root element is <{local(root.tag)}>, not <Event>")
    return element_to_record(root, written=written)
