"""What the forge writes: one event as Windows would log it, with typed payload values.

This is the contract between the scenario layer (which decides *what* happened) and the EVTX writer
(which decides *how it is laid out on disk*). Nothing here knows about bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import IntEnum


class ValueType(IntEnum):
    """BinXML value types the writer supports (libyal EVTX documentation, value types)."""

    NULL = 0x00
    STRING = 0x01  # UTF-16LE string
    ANSI_STRING = 0x02
    INT8 = 0x03
    UINT8 = 0x04
    INT16 = 0x05
    UINT16 = 0x06
    INT32 = 0x07
    UINT32 = 0x08
    INT64 = 0x09
    UINT64 = 0x0A
    REAL32 = 0x0B
    REAL64 = 0x0C
    BOOL = 0x0D
    BINARY = 0x0E
    GUID = 0x0F
    SIZE_T = 0x10
    FILETIME = 0x11
    SYSTEMTIME = 0x12
    SID = 0x13
    HEXINT32 = 0x14
    HEXINT64 = 0x15
    BINXML = 0x21
    STRING_ARRAY = 0x81


@dataclass(frozen=True)
class Value:
    """A typed payload value.

    Python values by type: STRING -> str; integer types -> int; BOOL -> bool; BINARY -> bytes;
    GUID -> str "{xxxxxxxx-...}" or "xxxxxxxx-..."; FILETIME/SYSTEMTIME -> aware datetime;
    SID -> str "S-1-5-18"; STRING_ARRAY -> tuple[str, ...]; NULL -> None.
    """

    type: ValueType
    value: object = None


def s(text: str) -> Value:
    """Shorthand for a string value."""
    return Value(ValueType.STRING, text)


def u32(number: int) -> Value:
    return Value(ValueType.UINT32, number)


def u64(number: int) -> Value:
    return Value(ValueType.UINT64, number)


@dataclass(frozen=True)
class Classic:
    """A classic (ReportEvent) payload: insert strings stored as ONE string-array value, plus Binary.

    Rendered by Rust evtx / libevtx / Event Viewer as one <Data> per string, then <Binary>.
    """

    strings: tuple[str, ...] = ()
    binary: bytes | None = None


@dataclass(frozen=True)
class EventData:
    """A manifest payload: <EventData [Name=template_name]><Data Name=...>...</Data>...</EventData>.

    A field name of None writes an unnamed <Data>.
    """

    fields: tuple[tuple[str | None, Value], ...] = ()
    template_name: str | None = None  # the Name attribute on <EventData> (Time-Service does this)
    binary: bytes | None = None  # an optional trailing <Binary>


@dataclass(frozen=True)
class UserData:
    """A UserData payload: <UserData><{root} xmlns={xmlns}><name>value</name>...</{root}></UserData>."""

    root: str
    xmlns: str
    fields: tuple[tuple[str, Value], ...] = ()


Payload = Classic | EventData | UserData


@dataclass(frozen=True)
class ForgedEvent:
    """One event, as the writer should lay it down. Times are timezone-aware UTC.

    `provider_guid` None means a classic provider: the writer then uses the classic System template
    (Provider Name literal, no Guid/Version/Opcode/Correlation/Execution elements; events.md §2.1).
    `record_id` is assigned by the writer in file order when left None.
    """

    time: datetime
    provider: str
    event_id: int
    channel: str
    computer: str
    payload: Payload = field(default_factory=Classic)
    level: int = 4
    provider_guid: str | None = None
    event_source_name: str | None = None
    qualifiers: int | None = None
    version: int = 0
    task: int = 0
    opcode: int = 0
    keywords: int = 0x8000000000000000
    process_id: int = 0
    thread_id: int = 0
    user_sid: str | None = None
    activity_id: str | None = None
    related_activity_id: str | None = None
    record_id: int | None = None

    @property
    def is_classic(self) -> bool:
        return self.provider_guid is None
