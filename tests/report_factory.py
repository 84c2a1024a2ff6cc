"""A hand-built Report for render tests: the shared-NIC incident on HV01 (events.md §13), one finding
with required/supporting/refuting/unknown evidence, one cause ruled out, and a ledger with an ok, a
partial and a skipped file. Reusable by other tests until the real pipeline produces reports.

make_report(hostile=True) puts attacker-style strings (HOSTILE) into event data, a host name and a
file path, to test escaping.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd

from evtxcorr.ledger import Ledger
from evtxcorr.model import COLUMNS, CauseText, Evidence, Finding, Incident, Report

SCRIPT = "<script>alert(1)</script>"
IMG = '"><img src=x onerror=alert(1)>'
RLO = "invoice\u202egnp.exe"
JS_URL = "javascript:alert(document.cookie)"
MD_BREAKER = "a|b `code` [x](javascript:alert(2)) **bold**\n# heading"
HOSTILE = (SCRIPT, IMG, RLO, JS_URL)

SYSTEM = "System"
HA = "Microsoft-Windows-Hyper-V-High-Availability-Admin"
FC = "Microsoft-Windows-FailoverClustering"
HA_PROVIDER = "Microsoft-Windows-Hyper-V-High-Availability"
HV01 = "HV01.contoso.local"
HV02 = "HV02.contoso.local"
E1I_BINARY = "0000040002003000000000001B0004A00000000000000000000000000000000000000000000000001B0004A0"
TEXT_21502 = (
    "Live migration of 'Virtual Machine SQL01' failed.\n"
    "Virtual machine migration operation for 'SQL01' failed at migration source 'HV01'. "
    "(Virtual machine ID 4A1C7E52-0F3B-4E0D-9D5A-2B8C6E1F7A90)\n"
    "The Virtual Machine Management Service failed to establish a connection for a Virtual Machine "
    "migration with host 'HV02': No authority could be contacted for authentication. (0x80090311).\n"
    "The Virtual Machine Management Service failed to authenticate the connection for a Virtual Machine "
    "migration at the source host: No authority could be contacted for authentication. (0x80090311)."
)

# (time, host, channel, provider, id, level, record id, data, data names, binary, codes)
EVENTS = [
    (
        "2026-09-15T14:10:00.125",
        HV02,
        "Microsoft-Windows-Hyper-V-VMMS-Admin",
        "Microsoft-Windows-Hyper-V-VMMS",
        20415,
        4,
        311,
        ("SQL02", "9B2D0C11-5E7A-4C1B-8F63-0A4D2E9B7C55", "0.42"),
        ("Parameter0", "Parameter1", "Parameter2"),
        "",
        (),
    ),
    (
        "2026-09-15T14:37:38.204",
        HV01,
        SYSTEM,
        "e1iexpress",
        27,
        3,
        483109,
        ("", "Intel(R) 82574L Gigabit Network Connection"),
        ("", ""),
        E1I_BINARY,
        ("0xA004001B",),
    ),
    (
        "2026-09-15T14:37:38.310",
        HV01,
        SYSTEM,
        "Tcpip",
        4202,
        3,
        483110,
        ("", "\\DEVICE\\TCPIP_{7E3F1A52-88C4-4D0E-9E2B-3C1F0A7D6B21}"),
        ("", ""),
        "",
        (),
    ),
    (
        "2026-09-15T14:37:43.020",
        HV02,
        SYSTEM,
        FC,
        1126,
        3,
        220415,
        ("HV01 - Ethernet 2", "HV01", "Cluster Network 1"),
        ("", "", ""),
        "",
        (),
    ),
    (
        "2026-09-15T14:37:41.512",
        HV01,
        SYSTEM,
        "NETLOGON",
        5719,
        2,
        483112,
        ("CONTOSO", "%%1311"),
        ("", ""),
        "5E0000C0",
        ("0xC000005E",),
    ),
    (
        "2026-09-15T14:37:49.101",
        HV01,
        SYSTEM,
        FC,
        1228,
        2,
        483115,
        ("Cluster Name", "Unable to obtain a logon token", "-1073741717"),
        ("ResourceName", "ErrorMessage", "ErrorCode"),
        "",
        ("0xC000006B",),
    ),
    (
        "2026-09-15T14:37:49.350",
        HV01,
        SYSTEM,
        FC,
        1069,
        2,
        483116,
        ("Cluster Name", "Cluster Group", "Network Name"),
        ("", "", ""),
        "",
        (),
    ),
    (
        "2026-09-15T14:37:55.880",
        HV01,
        HA,
        HA_PROVIDER,
        21502,
        2,
        1842,
        ("Virtual Machine SQL01", "4A1C7E52-0F3B-4E0D-9D5A-2B8C6E1F7A90", TEXT_21502),
        ("Parameter0", "Parameter1", "Parameter2"),
        "",
        ("0x80090311",),
    ),
    (
        "2026-09-15T14:39:10.004",
        HV01,
        SYSTEM,
        "Microsoft-Windows-GroupPolicy",
        1129,
        2,
        483131,
        ("1", "0", "0", "1046", "1222", "The network is not present or not started."),
        (
            "SupportInfo1",
            "SupportInfo2",
            "ProcessingMode",
            "ProcessingTimeInMilliseconds",
            "ErrorCode",
            "ErrorDescription",
        ),
        "",
        (),
    ),
    (
        "2026-09-15T14:40:12.500",
        HV01,
        SYSTEM,
        "Microsoft-Windows-Time-Service",
        129,
        3,
        483140,
        ("The entry is not found. (0x800706E1)", "15"),
        ("ErrorMessage", "RetryMinutes"),
        "",
        ("0x800706E1",),
    ),
    (
        "2026-09-15T14:52:07.730",
        HV01,
        SYSTEM,
        "e1iexpress",
        32,
        4,
        483177,
        ("", "Intel(R) 82574L Gigabit Network Connection"),
        ("", ""),
        "",
        (),
    ),
]
FILES = {
    (HV01, SYSTEM): "bundle.zip!HV01/System.evtx",
    (HV01, HA): f"bundle.zip!HV01/{HA}.evtx",
    (HV02, SYSTEM): "bundle.zip!HV02/System.evtx",
    (
        HV02,
        "Microsoft-Windows-Hyper-V-VMMS-Admin",
    ): "bundle.zip!HV02/Microsoft-Windows-Hyper-V-VMMS-Admin.evtx",
}
CAUSE = "shared-nic-sole-dc-path"
RULED_OUT = "all-dcs-down"


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def make_frame(events: list[tuple] = EVENTS) -> pd.DataFrame:  # type: ignore[type-arg]
    rows = []
    for time, host, channel, provider, event_id, level, record_id, data, names, binary, codes in events:
        rows.append(
            {
                "time": _time(time),
                "host": host,
                "channel": channel,
                "provider": provider,
                "event_id": event_id,
                "qualifiers": 0 if provider == "NETLOGON" else None,
                "level": level,
                "task": 0,
                "opcode": None,
                "version": None,
                "keywords": "0x80000000000000",
                "record_id": record_id,
                "process_id": None,
                "thread_id": None,
                "user": "",
                "activity_id": "",
                "data": data,
                "data_names": names,
                "binary": binary,
                "file": FILES[(host, channel)],
                "chunk": record_id % 7,
                "offset": 4096 + record_id % 900 * 64,
                "parser": "evtx",
                "host_key": host.split(".")[0].lower(),
                "codes": codes,
            }
        )
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    frame["time"] = pd.to_datetime(frame["time"], utc=True)
    return frame


def make_ledger(*, hostile: bool = False) -> Ledger:
    ledger = Ledger()
    ledger.add(
        FILES[(HV01, SYSTEM)],
        format="evtx",
        size=1_118_208,
        hosts=[HV01],
        channels=[SYSTEM],
        records=1832,
        chunks=17,
    )
    ledger.add(
        FILES[(HV01, HA)], format="evtx", size=69_632, hosts=[HV01], channels=[HA], records=12, chunks=1
    )
    partial = ledger.add(
        FILES[(HV02, SYSTEM)],
        format="evtx",
        size=1_052_672,
        hosts=[HV02],
        channels=[SYSTEM],
        records=1207,
        records_failed=4,
        duplicates=2,
        chunks=16,
        chunks_failed=1,
        recovered=3,
    )
    partial.degrade("chunk 9: bad chunk signature at offset 0x91000")
    partial.warn("chunk 9: 4 records could not be parsed by any backend")
    ledger.add(
        FILES[(HV02, "Microsoft-Windows-Hyper-V-VMMS-Admin")],
        format="evtx",
        size=69_632,
        hosts=[HV02],
        channels=["Microsoft-Windows-Hyper-V-VMMS-Admin"],
        records=1,
        chunks=1,
    )
    skipped_name = f"bundle.zip!HV02/{IMG}.txt" if hostile else "bundle.zip!HV02/cluster.log.txt"
    ledger.add(skipped_name, format="txt", size=5_220).skip("not an event log (text file)")
    ledger.warn("no Hyper-V-High-Availability-Admin log for HV02 in the bundle")
    return ledger


def make_causes() -> dict[str, CauseText]:
    shared = CauseText(
        title={
            "en": "Protected-network NIC was the host's only path to a domain controller",
            "ja": "保護されたネットワークの NIC がホストから DC への唯一の経路だった",
        },
        summary={
            "en": "On {host}, the link of the NIC shared by the VM switch and the host went down; "
            "the host lost its only path to a domain controller, so the live migration that "
            "protected-network detection started at {start} could not authenticate ({confidence}).",
            "ja": "{host} で、仮想スイッチとホストが共有する NIC のリンクが切断され、ホストは DC への唯一の"
            "経路を失いました。そのため {start} に保護されたネットワークの検知で開始されたライブ "
            "マイグレーションは認証できませんでした ({confidence})。",
        },
        explanation={
            "en": "Protected network moves a VM when its network fails. Live migration needs the "
            "source host to authenticate to the destination through a DC (Kerberos). When "
            "the pulled NIC also carried the host's only route to a DC, the migration "
            "fails with 0x80090311.",
            "ja": "保護されたネットワークは、ネットワーク障害時に仮想マシンを移動します。ライブ "
            "マイグレーションでは移行元ホストが DC 経由で移行先を認証する必要があります。"
            "抜線した NIC がホストから DC への唯一の経路でもあった場合、移行は 0x80090311 で"
            "失敗します。",
        },
        remedy={
            "en": "Do not share the protected network's switch NIC with the host when it is the "
            "host's only path to a DC.\nGive the host a second path to a DC, with static routes "
            "and metrics if the shared NIC should stay preferred.",
            "ja": "ホストから DC への唯一の経路となる NIC を、保護されたネットワークの仮想スイッチと共有しない"
            "でください。\nホストに DC への 2 つ目の経路を用意してください。",
        },
        cannot_show={
            "en": (
                "Whether the switch allows the management OS to share the NIC (configuration, not an event).",
                "The host's routing table at the time.",
            ),
            "ja": (
                "仮想スイッチが管理 OS との共有を許可しているか (構成であり、イベントではない)。",
                "当時のホストのルーティング テーブル。",
            ),
        },
        evidence={
            "link_down": {"en": "Link down on the source host", "ja": "移行元ホストでのリンク切断"},
            "dc_unreachable": {
                "en": "NETLOGON 5719 with STATUS_NO_LOGON_SERVERS",
                "ja": "STATUS_NO_LOGON_SERVERS の NETLOGON 5719",
            },
            "migration_auth": {
                "en": "Live migration failed with 0x80090311",
                "ja": "ライブ マイグレーションが 0x80090311 で失敗",
            },
            "cno_token": {
                "en": "Cluster name could not obtain a logon token",
                "ja": "クラスター名がログオン トークンを取得できない",
            },
            "peer_heartbeat": {
                "en": "Other nodes lost the source host's interface",
                "ja": "他のノードが移行元ホストのインターフェイスを見失った",
            },
            "others_keep_dc": {
                "en": "Other nodes kept their DC session",
                "ja": "他のノードは DC セッションを維持",
            },
            "migration_ok": {
                "en": "A live migration succeeded after the link went down",
                "ja": "リンク切断後にライブ マイグレーションが成功した",
            },
        },
        verify=(
            "Get-VMSwitch | Select Name, AllowManagementOS, NetAdapterInterfaceDescription",
            "Get-NetRoute -AddressFamily IPv4 | Sort-Object RouteMetric",
            "nltest /sc_query:CONTOSO",
        ),
        references=("https://learn.microsoft.com/windows-server/failover-clustering/", JS_URL),
    )
    all_dcs = CauseText(
        title={
            "en": "Every domain controller was unreachable",
            "ja": "すべてのドメイン コントローラーに到達できなかった",
        },
        summary={"en": "No node could reach a DC.", "ja": "どのノードも DC に到達できませんでした。"},
        explanation={"en": "All DCs down.", "ja": "すべての DC が停止。"},
        remedy={"en": "Restore the DCs.", "ja": "DC を復旧してください。"},
        cannot_show={"en": (), "ja": ()},
        evidence={
            "all_nodes_5719": {"en": "NETLOGON 5719 on every node", "ja": "すべてのノードで NETLOGON 5719"},
            "link_down": {
                "en": "Link down on a host (points to a local cause)",
                "ja": "ホストでのリンク切断 (局所的な原因を示す)",
            },
            "gp_failure": {
                "en": "Group Policy could not reach a DC",
                "ja": "グループ ポリシーが DC に到達できない",
            },
        },
    )
    return {CAUSE: shared, RULED_OUT: all_dcs}


def make_findings() -> tuple[list[Finding], list[Finding]]:
    finding = Finding(
        cause=CAUSE,
        incident="INC-0001",
        host="hv01",
        confidence=0.91,
        evidence=(
            Evidence("required", "link_down", "nic-link-down", "present", 0.25, (1, 2)),
            Evidence("required", "dc_unreachable", "netlogon-no-logon-servers", "present", 0.25, (4,)),
            Evidence("required", "migration_auth", "ha-migration-no-authority", "present", 0.25, (7,)),
            Evidence("supporting", "cno_token", "cno-logon-token", "present", 0.1, (5,)),
            Evidence("supporting", "peer_heartbeat", "cluster-interface-unreachable", "present", 0.06, (3,)),
            Evidence(
                "supporting",
                "others_keep_dc",
                "netlogon-no-logon-servers",
                "unknown",
                0.0,
                (),
                "evidence.unknown_missing_log",
            ),
            Evidence("refuting", "migration_ok", "vmms-migration-done", "absent", 0.0, ()),
        ),
        skew_seconds={"hv02": 0.42},
    )
    ruled_out = Finding(
        cause=RULED_OUT,
        incident="INC-0001",
        host="hv01",
        confidence=0.12,
        evidence=(
            Evidence(
                "required",
                "all_nodes_5719",
                "netlogon-no-logon-servers",
                "absent",
                -1.0,
                (),
                "evidence.required_not_met",
            ),
            Evidence("refuting", "link_down", "nic-link-down", "present", -0.35, (1, 2)),
            Evidence("supporting", "gp_failure", "gp-no-dc", "present", 0.1, (8,)),
        ),
    )
    return [finding], [ruled_out]


DETECTIONS = {
    "nic-link-down": "Network link down (NIC driver or Tcpip)",
    "netlogon-no-logon-servers": "NETLOGON 5719: no logon servers",
    "ha-migration-no-authority": "Live migration failed: no authenticating authority",
    "cno-logon-token": "Cluster name: unable to obtain a logon token",
    "cluster-interface-unreachable": "Cluster network interface unreachable",
    "vmms-migration-done": "Live migration completed",
    "gp-no-dc": "Group Policy: no DC connectivity",
}
SIGNALS = {
    1: ("nic-link-down",),
    2: ("nic-link-down",),
    3: ("cluster-interface-unreachable",),
    4: ("netlogon-no-logon-servers",),
    5: ("cno-logon-token",),
    7: ("ha-migration-no-authority",),
    8: ("gp-no-dc",),
    0: ("vmms-migration-done",),
}


def _hostile_events() -> list[tuple]:  # type: ignore[type-arg]
    events = [list(ev) for ev in EVENTS]
    events[4][7] = (SCRIPT, "%%1311")  # NETLOGON 5719 domain
    events[5][7] = (IMG, "Unable to obtain a logon token", "-1073741717")  # 1228 resource name
    events[7][7] = ("Virtual Machine SQL01", RLO, f"{JS_URL} {TEXT_21502}")  # 21502
    events[3][7] = (MD_BREAKER, "HV01", "Cluster Network 1")  # 1126 interface name
    return [tuple(ev) for ev in events]


def make_report(*, hostile: bool = False, with_finding: bool = True) -> Report:
    findings, rejected = make_findings()
    frame = make_frame(_hostile_events() if hostile else EVENTS)
    if hostile:
        frame.loc[3, "host"] = frame.loc[3, "host_key"] = f"HV02{SCRIPT}"
        frame.loc[2, "file"] = f"bundle.zip!HV01/{IMG}{RLO}.evtx"
    incident = Incident(
        id="INC-0001",
        start=_time("2026-09-15T14:37:38.204"),
        end=_time("2026-09-15T14:40:12.500"),
        hosts=(HV01, HV02) if not hostile else (HV01, f"HV02{SCRIPT}"),
        rows=(1, 2, 3, 4, 5, 6, 7, 8, 9),
        anchor_rows=(4, 5, 6, 7),
    )
    return Report(
        version="0.1.0",
        generated=datetime(2026, 9, 16, 2, 5, 11, tzinfo=UTC),
        options={"backend": "rust", "threshold": 0.5, "gap_s": 300, "rule_dirs": []},
        ledger=make_ledger(hostile=hostile),
        frame=frame,
        incidents=[incident],
        findings=findings if with_finding else [],
        rejected=rejected,
        causes=make_causes(),
        signals=dict(SIGNALS),
        detections={name: {"en": title} for name, title in DETECTIONS.items()},
    )
