"""Sample ForgedEvents for the writer tests: the incident's events as events.md describes them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from evtxcorr.forge.events import (
    Classic,
    EventData,
    ForgedEvent,
    UserData,
    Value,
    ValueType,
    s,
    u32,
    u64,
)

T0 = datetime(2024, 5, 29, 6, 14, 40, 870346, tzinfo=UTC)
V = ValueType
HOSTS = ("HV01.contoso.local", "HV02.contoso.local")
FC_GUID = "{BAF908EA-3421-4CA9-9B84-6689B8C6F85F}"
HA_GUID = "{64E92ABC-910C-4770-BD9C-C3C54699B8F9}"
TIME_GUID = "{06EDCFEB-0FD0-4E53-ACCA-A6F8BBF81BCB}"
VML_NS = "http://www.microsoft.com/Windows/Virtualization/Events"
E1I_BINARY = bytes.fromhex(
    "0000040002003000000000001B0004A00000000000000000000000000000000000000000000000001B0004A0"
)

EVERY_TYPE = (
    ("String", s("text <&>\"' ü 日本 😀")),
    ("Ansi", Value(V.ANSI_STRING, "ansi text")),
    ("Int8", Value(V.INT8, 5)),
    ("UInt8", Value(V.UINT8, 250)),
    ("Int16", Value(V.INT16, 300)),
    ("UInt16", Value(V.UINT16, 65000)),
    ("Int32", Value(V.INT32, 70000)),
    ("UInt32", u32(4_000_000_000)),
    ("Int64", Value(V.INT64, 2**40)),
    ("UInt64", u64(2**63 + 5)),
    ("Real32", Value(V.REAL32, 1.5)),
    ("Real64", Value(V.REAL64, -2.25)),
    ("BoolTrue", Value(V.BOOL, True)),
    ("BoolFalse", Value(V.BOOL, False)),
    ("Bin", Value(V.BINARY, b"\x01\xab\x00")),
    ("Guid", Value(V.GUID, "{54849625-5478-4994-A5BA-3E3B0328C30D}")),
    ("FileTime", Value(V.FILETIME, T0)),
    ("SystemTime", Value(V.SYSTEMTIME, T0.replace(microsecond=870000))),
    ("Sid", Value(V.SID, "S-1-5-21-1004336348-1177238915-682003330-512")),
    ("Hex32", Value(V.HEXINT32, 0x5E0000C0)),
    ("Hex64", Value(V.HEXINT64, 0x80090311)),
    ("Array", Value(V.STRING_ARRAY, ("first", "", "third"))),
    ("Null", Value(V.NULL)),
    ("Empty", s("")),
)


def netlogon_5719(time: datetime, host: str) -> ForgedEvent:
    return ForgedEvent(
        time=time,
        provider="NETLOGON",
        event_id=5719,
        channel="System",
        computer=host,
        level=2,
        qualifiers=0,
        keywords=0x80000000000000,
        payload=Classic(("CONTOSO", "%%1311"), bytes.fromhex("5E0000C0")),
    )


def tcpip_4202(time: datetime, host: str) -> ForgedEvent:
    return ForgedEvent(
        time=time,
        provider="Tcpip",
        event_id=4202,
        channel="System",
        computer=host,
        level=3,
        qualifiers=0,
        keywords=0x80000000000000,
        payload=Classic(("", "\\DEVICE\\TCPIP_{8B2E5A43-0B4C-4E5B-9C61-0F7F1F0A2D11}")),
    )


def e1iexpress_27(time: datetime, host: str) -> ForgedEvent:
    return ForgedEvent(
        time=time,
        provider="e1iexpress",
        event_id=27,
        channel="System",
        computer=host,
        level=3,
        qualifiers=40964,
        keywords=0x80000000000000,
        process_id=4,
        thread_id=172,
        payload=Classic(("", "Intel(R) 82574L Gigabit Network Connection"), E1I_BINARY),
    )


def cluster_1228(time: datetime, host: str) -> ForgedEvent:
    return ForgedEvent(
        time=time,
        provider="Microsoft-Windows-FailoverClustering",
        provider_guid=FC_GUID,
        event_id=1228,
        channel="System",
        computer=host,
        level=2,
        task=19,
        keywords=0x8000000000000000,
        process_id=2412,
        thread_id=5220,
        user_sid="S-1-5-18",
        payload=EventData(
            (
                ("ResourceName", s("Cluster Name")),
                ("ErrorString", s("Unable to obtain a logon token")),
                ("ErrorCode", s("-1073741717")),
            )
        ),
    )


def time_134(time: datetime, host: str) -> ForgedEvent:
    return ForgedEvent(
        time=time,
        provider="Microsoft-Windows-Time-Service",
        provider_guid=TIME_GUID,
        event_id=134,
        channel="System",
        computer=host,
        level=3,
        user_sid="S-1-5-19",
        process_id=1404,
        thread_id=3008,
        payload=EventData(
            (
                ("ErrorMessage", s("No such host is known. (0x80072AF9)")),
                ("RetryMinutes", u32(15)),
                ("DomainPeer", s("time.windows.com,0x9")),
            ),
            template_name="TMP_EVENT_MANUAL_PEER_DNS_ERROR",
        ),
    )


def ha_21502(time: datetime, host: str) -> ForgedEvent:
    return ForgedEvent(
        time=time,
        provider="Microsoft-Windows-Hyper-V-High-Availability",
        provider_guid=HA_GUID,
        event_id=21502,
        channel="Microsoft-Windows-Hyper-V-High-Availability-Admin",
        computer=host,
        level=2,
        user_sid="S-1-5-18",
        activity_id="{0F5C4B0E-61C6-4F24-9A33-9C0C9E0B1D2A}",
        payload=UserData(
            "VmlEventLog",
            VML_NS,
            (
                ("Parameter0", s("VM01")),
                ("Parameter1", s("F0A1B2C3-D4E5-4F60-8A9B-0C1D2E3F4A5B")),
                ("Parameter2", s("Live migration of 'VM01' failed. ... (0x80090311).")),
            ),
        ),
    )


def every_type(time: datetime, host: str) -> ForgedEvent:
    return ForgedEvent(
        time=time,
        provider="Forge-Every-Type",
        provider_guid="{7B1C9E47-1E5D-4C6B-8F0E-2B3A4C5D6E7F}",
        event_id=9999,
        channel="Application",
        computer=host,
        version=2,
        opcode=1,
        activity_id="{11111111-2222-3333-4444-555555555555}",
        related_activity_id="{66666666-7777-8888-9999-AAAAAAAAAAAA}",
        payload=EventData(EVERY_TYPE, binary=b"\x00\x01\xfe"),
    )


def service_7036(time: datetime, host: str) -> ForgedEvent:
    return ForgedEvent(
        time=time,
        provider="Service Control Manager",
        provider_guid="{555908d1-a6d7-4695-8e1e-26931d2012f4}",
        event_source_name="Service Control Manager",
        event_id=7036,
        channel="System",
        computer=host,
        qualifiers=16384,
        keywords=0x8080000000000000,
        process_id=620,
        thread_id=1132,
        payload=EventData((("param1", s("Netlogon")), ("param2", s("stopped")))),
    )


MAKERS = (
    netlogon_5719,
    tcpip_4202,
    e1iexpress_27,
    cluster_1228,
    time_134,
    ha_21502,
    every_type,
    service_7036,
)


def mixed_events(count: int = 330) -> list[ForgedEvent]:
    return [
        MAKERS[i % len(MAKERS)](T0 + timedelta(milliseconds=137 * i), HOSTS[(i // 5) % 2])
        for i in range(count)
    ]
