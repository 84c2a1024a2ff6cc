"""Event-table rows built from dicts, for the ruleset / correlate / diagnose tests.

Each helper returns one row dict with every model.COLUMNS key, shaped as events.md says Windows
writes the event (classic string arrays, manifest EventData, UserData children) and with the derived
`codes` a table would compute. `frame(rows)` makes the DataFrame the stages take.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd

from evtxcorr.model import COLUMNS

T0 = datetime(2026, 9, 15, 14, 37, 30, tzinfo=UTC)
HA_CHANNEL = "Microsoft-Windows-HyperV-High-Availability-Admin".replace("HyperV", "Hyper-V")
VMMS_CHANNEL = "Microsoft-Windows-Hyper-V-VMMS-Admin"
FC_OP_CHANNEL = "Microsoft-Windows-FailoverClustering/Operational"
FC = "Microsoft-Windows-FailoverClustering"
HA = "Microsoft-Windows-Hyper-V-High-Availability"

_record_ids: dict[tuple[str, str], int] = {}


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def row(
    host: str,
    seconds: float,
    provider: str,
    event_id: int,
    *,
    channel: str = "System",
    data: tuple[str, ...] = (),
    names: tuple[str, ...] | None = None,
    binary: str = "",
    codes: tuple[str, ...] = (),
    level: int = 2,
) -> dict[str, object]:
    fqdn = host if "." in host else f"{host}.contoso.local"
    key = (fqdn, channel)
    _record_ids[key] = _record_ids.get(key, 1000) + 1
    values: dict[str, object] = {column: None for column in COLUMNS}
    values.update(
        time=at(seconds),
        host=fqdn,
        channel=channel,
        provider=provider,
        event_id=event_id,
        qualifiers=0,
        level=level,
        task=0,
        opcode=None,
        version=None,
        keywords="0x80000000000000",
        record_id=_record_ids[key],
        process_id=0,
        thread_id=0,
        user="",
        activity_id="",
        data=tuple(data),
        data_names=tuple(names if names is not None else ("",) * len(data)),
        binary=binary,
        file=f"{host}/{channel.replace('/', '%4')}.evtx",
        chunk=0,
        offset=0,
        parser="evtx",
        host_key=fqdn.split(".")[0].lower(),
        codes=tuple(codes),
    )
    return values


# --- the incident's events (events.md §3-§13) ---------------------------------------------------


def link_down(host: str, s: float, driver: str = "e1iexpress") -> dict[str, object]:
    if driver == "Tcpip":
        return row(
            host,
            s,
            "Tcpip",
            4202,
            data=("", r"\DEVICE\TCPIP_{6B1C2D3E-0000-4000-8000-000000000001}"),
            level=3,
        )
    return row(
        host,
        s,
        driver,
        27,
        data=("", "Intel(R) 82574L Gigabit Network Connection"),
        level=3,
        binary="0000040002003000000000001B0004A00000000000000000000000000000000000000000000000001B0004A0",
    )


def link_up(host: str, s: float) -> dict[str, object]:
    return row(host, s, "e1iexpress", 32, data=("", "Intel(R) 82574L Gigabit Network Connection"), level=4)


NTSTATUS_CODES = {
    "5E0000C0": ("0xC000005E", "0x0000051F"),
    "6D0000C0": ("0xC000006D",),
    "220000C0": ("0xC0000022",),
    "E50000C0": ("0xC00000E5",),
}


REASONS = {"5E0000C0": "%%1311", "6D0000C0": "%%1326", "220000C0": "%%5", "E50000C0": "%%1359"}


def netlogon_5719(
    host: str, s: float, binary: str = "5E0000C0", reason: str | None = None
) -> dict[str, object]:
    reason = REASONS.get(binary, "%%1311") if reason is None else reason
    return row(
        host,
        s,
        "NETLOGON",
        5719,
        data=("CONTOSO", reason),
        binary=binary,
        codes=NTSTATUS_CODES.get(binary, ()),
    )


def netlogon_3210(host: str, s: float) -> dict[str, object]:
    return row(
        host,
        s,
        "NETLOGON",
        3210,
        data=(r"\\DC01.contoso.local", "CONTOSO"),
        binary="220000C0",
        codes=("0xC0000022",),
    )


WIN32_CODES = {
    "-1073741717": ("0xC000006B",),
    "1311": ("0x0000051F",),
    "1326": ("0x0000052E",),
    "5": ("0x00000005",),
}


def fc_1228(host: str, s: float, code: str = "-1073741717") -> dict[str, object]:
    return row(
        host,
        s,
        FC,
        1228,
        data=("Cluster Name", "Unable to obtain a logon token", code),
        codes=WIN32_CODES.get(code, ()),
    )


def fc(host: str, s: float, event_id: int, *data: str) -> dict[str, object]:
    return row(host, s, FC, event_id, data=tuple(data), level=3 if event_id == 1126 else 2)


def fc_op(host: str, s: float, event_id: int, *data: str) -> dict[str, object]:
    """A FailoverClustering Operational event, e.g. 1153/1641 (role %1 from node %2 to node %3)."""
    return row(host, s, FC, event_id, channel=FC_OP_CHANNEL, data=tuple(data), level=4)


def role_move(host: str, s: float, source: str, target: str) -> dict[str, object]:
    """1641 logged on `host`: a clustered role moving from `source` to `target` (names two nodes)."""
    return fc_op(host, s, 1641, "SQL01", source, target)


def ha_21502(host: str, s: float, code: str = "0x80090311", dest: str = "HV02") -> dict[str, object]:
    text = (
        f"Live migration of 'Virtual Machine SQL01' failed. Virtual machine migration operation for "
        f"'SQL01' failed at migration source '{host}'. The Virtual Machine Management Service failed "
        f"to establish a connection for a Virtual Machine migration with host '{dest}': No authority "
        f"could be contacted for authentication. ({code})."
    )
    return row(
        host,
        s,
        HA,
        21502,
        channel=HA_CHANNEL,
        data=("Virtual Machine SQL01", "4A1C7E52-0F3B-4E0D-9D5A-2B8C6E1F7A90", text),
        names=("Parameter0", "Parameter1", "Parameter2"),
        codes=(code,),
    )


def ha(host: str, s: float, event_id: int) -> dict[str, object]:
    return row(
        host,
        s,
        HA,
        event_id,
        channel=HA_CHANNEL,
        level=4,
        data=("4A1C7E52-0F3B-4E0D-9D5A-2B8C6E1F7A90", "Virtual Machine SQL01"),
        names=("Parameter0", "Parameter1"),
    )


def gp_1129(host: str, s: float) -> dict[str, object]:
    return row(
        host,
        s,
        "Microsoft-Windows-GroupPolicy",
        1129,
        data=("1", "2", "0", "1234", "1222", "The network is not present or not started."),
        names=(
            "SupportInfo1",
            "SupportInfo2",
            "ProcessingMode",
            "ProcessingTimeInMilliseconds",
            "ErrorCode",
            "ErrorDescription",
        ),
        codes=("0x000004C6",),
    )


def noise(host: str, s: float, n: int = 0) -> dict[str, object]:
    """Benign traffic: Service Control Manager 7036 and Time-Service 37."""
    if n % 2:
        return row(
            host,
            s,
            "Microsoft-Windows-Time-Service",
            37,
            data=("DC01.contoso.local",),
            names=("TimeSource",),
            level=4,
        )
    return row(host, s, "Service Control Manager", 7036, data=("Windows Update", "running"), level=4)


def quiet_log(
    host: str, start: float = -3600, end: float = 7200, every: float = 600
) -> list[dict[str, object]]:
    """A node's System log that spans [start, end] with only benign events in it."""
    count = int((end - start) // every) + 1
    return [noise(host, start + i * every, i) for i in range(count)]


def ha_log(host: str, start: float = -3600, end: float = 7200) -> list[dict[str, object]]:
    """An HA-Admin log spanning the window (a 21111-free benign start/stop pair)."""
    return [ha(host, start, 21119), ha(host, end, 21119)]


def dc_flap(host: str, start: float, end: float, every: float = 1200) -> list[dict[str, object]]:
    """A DC that keeps dropping: a 5719 (no logon servers) on `host` every `every` s in [start, end]."""
    count = int((end - start) // every) + 1
    return [netlogon_5719(host, start + i * every) for i in range(count)]


def frame(rows: list[dict[str, object]]) -> pd.DataFrame:
    table = pd.DataFrame(rows, columns=list(COLUMNS))
    table["time"] = pd.to_datetime(table["time"], utc=True).astype("datetime64[ns, UTC]")
    table["event_id"] = table["event_id"].astype("int64")
    table = table.sort_values(["time", "host"], kind="stable").reset_index(drop=True)
    return table


# --- scenarios ----------------------------------------------------------------------------------


def shared_nic(host: str = "HV01", s: float = 0.0) -> list[dict[str, object]]:
    return [
        link_down(host, s),
        link_down(host, s + 0.4, "Tcpip"),
        ha(host, s + 6, 21300),
        fc("HV02", s + 5, 1126, f"{host} - Ethernet 2", host, "Cluster Network 2"),
        ha_21502(host, s + 22),
        netlogon_5719(host, s + 41),
        fc_1228(host, s + 79),
        gp_1129(host, s + 300),
        link_up(host, s + 1800),
    ]


def cluster(
    hosts: tuple[str, ...] = ("HV01", "HV02", "HV03"),
    *,
    without: tuple[str, ...] = (),
    start: float = -3600,
    end: float = 7200,
) -> list[dict[str, object]]:
    """Benign System and HA logs for every node spanning [start, end] (default: the test window),
    except the System logs of `without`."""
    rows: list[dict[str, object]] = []
    for host in hosts:
        if host not in without:
            rows += quiet_log(host, start, end)
        rows += ha_log(host, start, end)
    return rows
