"""Collection layouts: what a file name says about its host and channel, as a table of patterns.

Hints only: the records' own Computer and Channel win, and parse/ warns when they disagree.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

# (layout name, pattern on the base name). Groups: host, channel, ext. First match wins.
LAYOUTS: tuple[tuple[str, re.Pattern[str]], ...] = (
    # TSS / SDP collectors: HV01_evt_System.evtx, HV01_evt_Microsoft-Windows-...-Operational.csv
    ("tss", re.compile(r"^(?P<host>[^_\\/]+)_evt_(?P<channel>.+)\.(?P<ext>evtx|csv|txt|xml|json)$", re.IGNORECASE)),
    # Get-SDDCDiagnosticInfo (PrivateCloud.DiagnosticInfo): HV01_UnfilteredEvent_System.EVTX
    ("sddc", re.compile(r"^(?P<host>[^_\\/]+)_UnfilteredEvent_(?P<channel>.+)\.(?P<ext>evtx)$", re.IGNORECASE)),
    # %SystemRoot%\System32\winevt\Logs: '%4' stands for '/' in channel names
    ("winevt", re.compile(r"^(?P<channel>[^_\\/]*%4[^\\/]+)\.(?P<ext>evtx|xml|csv|json)$", re.IGNORECASE)),
    ("winevt", re.compile(
        r"^(?P<channel>Application|System|Security|Setup|ForwardedEvents|HardwareEvents"
        r"|Microsoft-Windows-[A-Za-z0-9.-]+-(?:Admin|Operational|Diagnostic))\.(?P<ext>evtx|xml|csv|json)$",
        re.IGNORECASE,
    )),
)  # fmt: skip

TEXT_EXTENSIONS = ("csv", "txt")


@dataclass(frozen=True)
class NameHints:
    layout: str | None = None
    host: str | None = None
    channel: str | None = None
    ext: str = ""


# Channels a cluster bundle holds, as Windows names them. A collector that cannot put '/' in a file name
# writes '%4' (winevt\Logs) or '-' (TSS: HV01_evt_Microsoft-Windows-FailoverClustering-Operational.csv),
# so a channel named by a file name is looked up here loosely (letters and digits only).
KNOWN_CHANNELS = (
    "Application", "System", "Security", "Setup",
    "Microsoft-Windows-FailoverClustering/Operational",
    "Microsoft-Windows-FailoverClustering/Diagnostic",
    "Microsoft-Windows-FailoverClustering-Manager/Admin",
    "Microsoft-Windows-FailoverClustering-CsvFs/Operational",
    "Microsoft-Windows-Hyper-V-High-Availability-Admin",
    "Microsoft-Windows-Hyper-V-VMMS-Admin",
    "Microsoft-Windows-Hyper-V-VMMS-Networking",
    "Microsoft-Windows-Hyper-V-Worker-Admin",
    "Microsoft-Windows-Hyper-V-VmSwitch-Operational",
    "Microsoft-Windows-GroupPolicy/Operational",
    "Microsoft-Windows-Time-Service/Operational",
    "Microsoft-Windows-NetworkProfile/Operational",
    "Microsoft-Windows-SMBClient/Operational",
    "Microsoft-Windows-SMBServer/Operational",
)  # fmt: skip
_LOOSE_CHANNELS = {re.sub(r"[^0-9a-z]", "", name.lower()): name for name in KNOWN_CHANNELS}


def channel_from_name(text: str) -> str:
    """A channel as spelled in a file name -> its real name ('%4' is '/'; a known channel whatever
    stands for its '/')."""
    name = text.replace("%4", "/")
    return _LOOSE_CHANNELS.get(re.sub(r"[^0-9a-z]", "", name.lower()), name)


def hints(base_name: str) -> NameHints:
    """Host and channel named by a file's base name, by the first matching layout."""
    for layout, pattern in LAYOUTS:
        match = pattern.match(base_name)
        if match:
            groups = match.groupdict()
            channel = groups.get("channel")
            return NameHints(
                layout=layout,
                host=groups.get("host"),
                channel=channel_from_name(channel) if channel else None,
                ext=groups.get("ext", "").lower(),
            )
    ext = base_name.rsplit(".", 1)[-1].lower() if "." in base_name else ""
    return NameHints(ext=ext)


def folder_index(names: Iterable[str]) -> dict[str, str]:
    """Lower-cased name -> name, for the files of one folder (built once, looked up per file)."""
    return {name.lower(): name for name in names}


def evtx_sibling(base_name: str, folder: Mapping[str, str]) -> str | None:
    """For a text export (X.csv / X.txt), the name of the X.evtx beside it in `folder` (folder_index)."""
    stem, dot, ext = base_name.rpartition(".")
    if not dot or ext.lower() not in TEXT_EXTENSIONS:
        return None
    return folder.get(f"{stem}.evtx".lower())
