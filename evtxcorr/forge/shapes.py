"""Which templates and values Windows writes for a ForgedEvent (events.md §2, evtx-format.md).

Three System templates, as read from real logs with python-evtx's `evtx_template_readable_view`:
* manifest: 18 values; Provider Name/Guid subs 14/15, Channel sub 16, EventData/UserData sub 17;
* classic (ReportEvent source, no GUID): 20 values; Provider Name and Channel literal, no
  Version/Opcode/Correlation/Execution; EventData sub 19;
* classic through a manifest provider (`event_source_name` set, e.g. Service Control Manager): 20
  values; Provider Name, Guid and EventSourceName literal, Channel literal, RelatedActivityID sub 18,
  EventData sub 19.
`Computer` is always a literal, so each host gets its own template.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from functools import lru_cache
from operator import attrgetter

from evtxcorr.forge.binxml import (
    Element,
    Encoded,
    Sub,
    Template,
    Text,
    descriptors,
    encode_value,
    guid_bytes,
    instance_values,
    sid_bytes,
    template,
)
from evtxcorr.forge.events import Classic, EventData, ForgedEvent, Payload, UserData, Value, ValueType

EVENT_NS = "http://schemas.microsoft.com/win/2004/08/events/event"
T = ValueType
NULL: Encoded = (0, b"")


def _leaf(name: str, index: int, value_type: int) -> Element:
    return Element(name, (), (Sub(index, value_type),))


def _system_tail(channel: Element, computer: str) -> tuple[Element, ...]:
    return (
        channel,
        Element("Computer", (), (Text(computer),)),
        Element("Security", (("UserID", Sub(12, T.SID)),)),
    )


def _event(system: tuple[Element, ...], payload_index: int) -> Template:
    return template(
        Element(
            "Event",
            (("xmlns", Text(EVENT_NS)),),
            (Element("System", (), system), Sub(payload_index, T.BINXML)),
        )
    )


_EVENT_ID = Element("EventID", (("Qualifiers", Sub(4, T.UINT16)),), (Sub(3, T.UINT16),))
_LEVEL = _leaf("Level", 0, T.UINT8)
_TASK = _leaf("Task", 2, T.UINT16)
_KEYWORDS = _leaf("Keywords", 5, T.HEXINT64)
_TIME = Element("TimeCreated", (("SystemTime", Sub(6, T.FILETIME)),))
_RECORD_ID = _leaf("EventRecordID", 10, T.UINT64)
_VERSION = _leaf("Version", 11, T.UINT8)
_OPCODE = _leaf("Opcode", 1, T.UINT8)
_EXECUTION = Element("Execution", (("ProcessID", Sub(8, T.UINT32)), ("ThreadID", Sub(9, T.UINT32))))


def _correlation(related_index: int) -> Element:
    return Element(
        "Correlation", (("ActivityID", Sub(7, T.GUID)), ("RelatedActivityID", Sub(related_index, T.GUID)))
    )


@lru_cache(maxsize=1024)
def manifest_system(computer: str) -> Template:
    provider = Element("Provider", (("Name", Sub(14, T.STRING)), ("Guid", Sub(15, T.GUID))))
    system = (
        provider,
        _EVENT_ID,
        _VERSION,
        _LEVEL,
        _TASK,
        _OPCODE,
        _KEYWORDS,
        _TIME,
        _RECORD_ID,
        _correlation(13),
        _EXECUTION,
        *_system_tail(_leaf("Channel", 16, T.STRING), computer),
    )
    return _event(system, 17)


@lru_cache(maxsize=1024)
def classic_system(provider: str, channel: str, computer: str) -> Template:
    system = (
        Element("Provider", (("Name", Text(provider)),)),
        _EVENT_ID,
        _LEVEL,
        _TASK,
        _KEYWORDS,
        _TIME,
        _RECORD_ID,
        *_system_tail(Element("Channel", (), (Text(channel),)), computer),
    )
    return _event(system, 19)


@lru_cache(maxsize=1024)
def source_name_system(provider: str, guid: str, source: str, channel: str, computer: str) -> Template:
    attrs = (("Name", Text(provider)), ("Guid", Text(guid)), ("EventSourceName", Text(source)))
    system = (
        Element("Provider", attrs),
        _EVENT_ID,
        _VERSION,
        _LEVEL,
        _TASK,
        _OPCODE,
        _KEYWORDS,
        _TIME,
        _RECORD_ID,
        _correlation(18),
        _EXECUTION,
        *_system_tail(Element("Channel", (), (Text(channel),)), computer),
    )
    return _event(system, 19)


# Classic payload: one template shared by every classic event (events.md §2.1).
CLASSIC_EVENTDATA = template(
    Element("EventData", (), (_leaf("Data", 0, T.STRING_ARRAY), _leaf("Binary", 2, T.BINARY)))
)


def _guid_literal(guid: str) -> str:
    return "{" + guid.strip("{}").lower() + "}"


_U8 = struct.Struct("<B").pack
_U16 = struct.Struct("<H").pack
_U32 = struct.Struct("<I").pack
_U64 = struct.Struct("<Q").pack


@lru_cache(maxsize=4096)
def _string(text: str) -> bytes:
    return text.encode("utf-16-le", "surrogatepass")


@lru_cache(maxsize=1024)
def _guid(text: str) -> bytes:
    return guid_bytes(text)


@lru_cache(maxsize=1024)
def _sid(text: str) -> bytes:
    return sid_bytes(text)


@dataclass(frozen=True, slots=True)
class SystemPart:
    """The System template and its values packed once per distinct event header.

    TimeCreated (value 6), ProcessID, ThreadID and EventRecordID (values 8-10) are packed per record:
    the values are `head`, TimeCreated, `middle`, ProcessID, ThreadID, EventRecordID, `tail`, then the
    payload (BinXML, the last value).
    """

    template: Template
    count: int  # number of values, payload included
    descriptors: bytes  # descriptors of every value but the payload
    head: bytes  # values 0-5
    middle: bytes  # value 7 (ActivityID)
    tail: bytes  # values 11 up to the payload

    @property
    def values_size(self) -> int:
        """Bytes of value data before the payload."""
        return len(self.head) + 8 + len(self.middle) + 16 + len(self.tail)


_SYSTEM_KEY = attrgetter(
    "provider",
    "provider_guid",
    "event_source_name",
    "event_id",
    "channel",
    "computer",
    "level",
    "qualifiers",
    "version",
    "task",
    "opcode",
    "keywords",
    "user_sid",
    "activity_id",
    "related_activity_id",
)


def system_part(event: ForgedEvent) -> SystemPart:
    """The packed System part for this event's header fields (cached)."""
    return _system_part(_SYSTEM_KEY(event))


@lru_cache(maxsize=65536)
def _system_part(key: tuple) -> SystemPart:
    (
        provider,
        provider_guid,
        source,
        event_id,
        channel,
        computer,
        level,
        qualifiers,
        version,
        task,
        opcode,
        keywords,
        user_sid,
        activity_id,
        related_activity_id,
    ) = key
    classic = provider_guid is None
    if classic and qualifiers is None:
        qualifiers = 0  # classic events always carry Qualifiers
    values: list[Encoded] = [
        (T.UINT8, _U8(level)),
        (T.UINT8, _U8(opcode)),
        (T.UINT16, _U16(task)),
        (T.UINT16, _U16(event_id)),
        NULL if qualifiers is None else (T.UINT16, _U16(qualifiers)),
        (T.HEXINT64, _U64(keywords)),
        (T.FILETIME, bytes(8)),  # placeholder: TimeCreated
        NULL if activity_id is None else (T.GUID, _guid(activity_id)),
        (T.UINT32, bytes(4)),  # placeholder: ProcessID
        (T.UINT32, bytes(4)),  # placeholder: ThreadID
        (T.UINT64, bytes(8)),  # placeholder: EventRecordID
        (T.UINT8, _U8(version)),
        NULL if user_sid is None else (T.SID, _sid(user_sid)),
    ]
    related = NULL if related_activity_id is None else (T.GUID, _guid(related_activity_id))
    if classic:
        tmpl = classic_system(provider, channel, computer)
        values += [related, NULL, NULL, NULL, NULL, NULL]
    elif source is not None:
        tmpl = source_name_system(provider, _guid_literal(provider_guid), source, channel, computer)
        values += [NULL, NULL, NULL, NULL, NULL, related]
    else:
        tmpl = manifest_system(computer)
        values += [
            related,
            (T.STRING, _string(provider)),
            (T.GUID, _guid(provider_guid)),
            (T.STRING, _string(channel)),
        ]
    return SystemPart(
        template=tmpl,
        count=len(values) + 1,
        descriptors=descriptors(values),
        head=b"".join(data for _, data in values[:6]),
        middle=values[7][1],
        tail=b"".join(data for _, data in values[11:]),
    )


@lru_cache(maxsize=4096)
def _eventdata_tree(
    names: tuple[str | None, ...], types: tuple[int, ...], template_name: str | None, binary: bool
) -> Template:
    children: list[Element] = []
    for index, (name, value_type) in enumerate(zip(names, types, strict=True)):
        attrs = () if name is None else (("Name", Text(name)),)
        children.append(Element("Data", attrs, (Sub(index, value_type, optional=False),)))
    if binary:
        children.append(Element("Binary", (), (Sub(len(names), T.BINARY, optional=False),)))
    attrs = () if template_name is None else (("Name", Text(template_name)),)
    return template(Element("EventData", attrs, tuple(children)))


@lru_cache(maxsize=4096)
def _userdata_tree(root: str, xmlns: str, names: tuple[str, ...], types: tuple[int, ...]) -> Template:
    children = tuple(
        Element(name, (), (Sub(index, value_type, optional=False),))
        for index, (name, value_type) in enumerate(zip(names, types, strict=True))
    )
    return template(Element("UserData", (), (Element(root, (("xmlns", Text(xmlns)),), children),)))


def _payload_value(value: Value) -> Encoded:
    """A payload value for a normal substitution. NULL (or None) becomes an empty string: libevtx refuses
    a NULL (type 0) value in a normal substitution, and every renderer shows both as an empty <Data>."""
    if value.type is T.STRING and value.value is not None:
        return T.STRING, _utf16(value.value)
    encoded = encode_value(value)
    return (T.STRING, b"") if encoded[0] == T.NULL else encoded


def _utf16(text: str) -> bytes:
    return text.encode("utf-16-le", "surrogatepass")


def payload_part(payload: Payload) -> tuple[Template, bytes]:
    """The nested payload template (EventData or UserData) and its packed values (cached)."""
    try:
        return _payload_part(payload)
    except TypeError:  # an unhashable value (a list for a tuple): pack without the cache
        return _payload_part.__wrapped__(payload)


@lru_cache(maxsize=65536)
def _payload_part(payload: Payload) -> tuple[Template, bytes]:
    tmpl, values = payload_shape(payload)
    return tmpl, instance_values(values)


def payload_shape(payload: Payload) -> tuple[Template, list[Encoded]]:
    """The nested payload template (EventData or UserData) and its values."""
    if isinstance(payload, Classic):
        strings = (T.STRING_ARRAY, b"".join([_utf16(text) + b"\0\0" for text in payload.strings]))
        binary = payload.binary
        return CLASSIC_EVENTDATA, [
            strings if payload.strings else NULL,
            (T.UINT32, _U32(len(binary) if binary else 0)),
            (T.BINARY, bytes(binary)) if binary else NULL,
        ]
    if isinstance(payload, EventData):
        values = [_payload_value(v) for _, v in payload.fields]
        types = tuple([value_type for value_type, _ in values])  # the template declares what is written
        names = tuple([name for name, _ in payload.fields])
        tree = _eventdata_tree(names, types, payload.template_name, payload.binary is not None)
        if payload.binary is not None:
            values.append((T.BINARY, bytes(payload.binary)))
        return tree, values
    if isinstance(payload, UserData):
        values = [_payload_value(v) for _, v in payload.fields]
        types = tuple([value_type for value_type, _ in values])
        names = tuple([name for name, _ in payload.fields])
        return _userdata_tree(payload.root, payload.xmlns, names, types), values
    raise TypeError(f"unknown payload type {type(payload).__name__}")
