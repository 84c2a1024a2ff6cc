"""What the export readers share: text decoding, local times, the record skeleton, failure notes.

Encodings, by what the tools write (PowerShell about_Character_Encoding): a BOM says UTF-8 or
UTF-16 (Windows PowerShell's `>`, Out-File, `-Encoding Unicode`); without one, UTF-8 (PowerShell 7)
or, when the bytes are not UTF-8, the ANSI code page of a Japanese Windows (cp932), then cp1252,
each said in a warning.
"""

from __future__ import annotations

import codecs
import io
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from evtxcorr.errors import InputError
from evtxcorr.ledger import InputEntry
from evtxcorr.model import EXPORT_FIELDS, RECORD_FIELDS, Source

HEAD_BYTES = 65536  # what needs_zone() and encoding detection look at
MAX_LOCATED_FAILURES = 5
CLASSIC_KEYWORD = 0x0080000000000000  # the 'Classic' keyword bit of ReportEvent sources (events.md §2.1)
UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

_BOMS = ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))
_NET_DATE = re.compile(r"^/Date\((-?\d+)(?:[+-]\d{4})?\)/$")
# ISO-like stamps: '2026-09-15T14:37:41.5120000Z', '2026-09-15 23:37:41', '2026-09-15T23:37:41+09:00'
_ISO = re.compile(
    r"^(\d{4})-(\d{1,2})-(\d{1,2})[T ](\d{1,2}):(\d{2}):(\d{2})(?:\.(\d+))?\s*(Z|[+-]\d{2}:?\d{2})?$"
)


def detect_encoding(head: bytes) -> tuple[str, str | None]:
    """(Python codec, warning or None) for a text file starting with `head`."""
    for bom, codec in _BOMS:
        if head.startswith(bom):
            return codec, None
    if len(head) >= 4 and head[1:4:2] == b"\0\0" and head[0:3:2] != b"\0\0":
        return "utf-16-le", "no byte-order mark: read as UTF-16 LE"
    try:
        head.decode("utf-8")
        return "utf-8", None
    except UnicodeDecodeError as exc:
        if exc.start > len(head) - 4:  # a character cut by the sample's end
            return "utf-8", None
    for codec in ("cp932", "cp1252"):
        try:
            head.decode(codec)
            return codec, f"not UTF-8: read as {codec} (a guess; re-export as UTF-8 if text looks wrong)"
        except UnicodeDecodeError:
            continue
    return "utf-8", "not UTF-8 and no known code page fits: undecodable bytes replaced"


def read_head(path: Path, size: int = HEAD_BYTES) -> bytes:
    with path.open("rb") as fh:
        return fh.read(size)


def head_text(path: Path, size: int = HEAD_BYTES) -> str:
    """The first `size` bytes of a text file, decoded (BOM removed)."""
    head = read_head(path, size)
    codec, _ = detect_encoding(head)
    return head.decode(codec, errors="replace").lstrip("\ufeff")


def open_text(path: Path, entry: InputEntry | None = None, *, newline: str | None = None) -> io.TextIOWrapper:
    """The file as text in its detected encoding; the guess, if any, is warned on `entry`."""
    codec, warning = detect_encoding(read_head(path, 4096))
    if warning and entry is not None:
        entry.warn(warning)
    return io.TextIOWrapper(path.open("rb"), encoding=codec, errors="replace", newline=newline)


def zone_of(source_tz: str | None) -> ZoneInfo | None:
    return ZoneInfo(source_tz) if source_tz else None


@dataclass
class LocalTimes:
    """Turns the local times of one file into UTC with --source-tz, and tells the entry it did."""

    entry: InputEntry
    source: Source
    zone: ZoneInfo | None
    ambiguous: int = 0

    def to_utc(self, naive: datetime) -> datetime:
        if self.zone is None:
            raise InputError(zone_error([self.source.display]))
        self.entry.source_tz = str(self.zone.key)
        first, second = naive.replace(tzinfo=self.zone), naive.replace(tzinfo=self.zone, fold=1)
        if first.utcoffset() != second.utcoffset():
            self.ambiguous += 1
        return first.astimezone(UTC)

    def finish(self) -> None:
        if self.ambiguous:
            self.entry.warn(
                f"{self.ambiguous} local time(s) fall in the hour repeated when daylight saving time "
                "ended: read as the first of the two"
            )


def zone_error(displays: list[str]) -> str:
    more = f" (and {len(displays) - 1} more)" if len(displays) > 1 else ""
    return (
        f"{displays[0]}{more}: its times are local times with no zone; give --source-tz ZONE, the "
        "time zone of the Windows machine that exported it (an IANA name such as Asia/Tokyo or UTC)"
    )


def unit_of_fraction(fraction: str | None) -> int:
    """Resolution in microseconds of a time printed with `fraction` digits after the second."""
    digits = len(fraction or "")
    return 10 ** (6 - min(digits, 6))


def parse_iso(text: str, local: LocalTimes | None) -> tuple[datetime, int] | None:
    """(UTC time, resolution in µs) of an ISO-like stamp, or None when it is not one. A stamp with
    no zone is local time (converted by `local`)."""
    match = _ISO.match(text.strip())
    if not match:
        return None
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    fraction, zone = match.group(7), match.group(8)
    micro = int((fraction or "0")[:6].ljust(6, "0"))
    naive = datetime(year, month, day, hour, minute, second, micro)  # noqa: DTZ001 - zone decided below
    if zone is None:
        if local is None:
            return None
        return local.to_utc(naive), unit_of_fraction(fraction)
    if zone == "Z":
        offset = timedelta(0)
    else:
        sign = -1 if zone[0] == "-" else 1
        digits = zone[1:].replace(":", "")
        offset = sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
    return (naive - offset).replace(tzinfo=UTC), unit_of_fraction(fraction)


def parse_net_date(text: str) -> datetime | None:
    """Windows PowerShell's ConvertTo-Json date '/Date(1694770661512)/' (ms since 1970, UTC)."""
    match = _NET_DATE.match(text.strip())
    return UNIX_EPOCH + timedelta(milliseconds=int(match.group(1))) if match else None


def has_zone(text: str) -> bool:
    """Does a printed time say its zone ('/Date(..)/', 'Z', '+09:00')?"""
    text = text.strip()
    if _NET_DATE.match(text):
        return True
    match = _ISO.match(text)
    return bool(match and match.group(8))


def skeleton(entry: InputEntry, parser: str) -> dict[str, object]:
    """A record with every field at its 'not in this export' value; readers fill what they have."""
    record: dict[str, object] = dict.fromkeys(RECORD_FIELDS)
    record.update(
        channel="",
        host="",
        provider="",
        keywords="",
        record_id=0,
        user="",
        activity_id="",
        data=(),
        data_names=(),
        binary="",
        file=entry.path,
        input_id=entry.id,
        parser=parser,
    )
    record.update({name: default for name, (default, _) in EXPORT_FIELDS.items()})
    return record


def keywords_hex(value: object) -> str:
    """Keywords as RECORD_FIELDS wants them ('0x8000000000000000') from PowerShell's signed Int64
    (-9223372036854775808), a decimal or a hex text; '' when empty."""
    if value is None or value == "":
        return ""
    number = value if isinstance(value, int) else int(str(value).strip(), 0)
    return hex(number & 0xFFFFFFFFFFFFFFFF)


def int_or_none(value: object) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    text = str(value).strip()
    if not text:
        return None
    try:
        return int(text, 0) if text[:2].lower() == "0x" else int(text)
    except ValueError:
        return None


_POWERSHELL_INTS = (
    ("Version", "version"), ("Qualifiers", "qualifiers"), ("Level", "level"), ("Task", "task"),
    ("Opcode", "opcode"), ("ProcessId", "process_id"), ("ThreadId", "thread_id"),
)  # fmt: skip


def fill_powershell(record: dict[str, object], values: Mapping[str, object]) -> None:
    """The fields PowerShell's EventLogRecord gives (CSV cells or JSON values, objects unwrapped),
    except TimeCreated and the payload, which the two formats print differently."""
    record["event_id"] = int(str(values["Id"]))
    for column, name in _POWERSHELL_INTS:
        record[name] = int_or_none(values.get(column))
    record["record_id"] = int_or_none(values.get("RecordId")) or 0
    record["keywords"] = keywords_hex(values.get("Keywords"))
    record["provider"] = str(values.get("ProviderName") or "")
    record["channel"] = str(values.get("LogName") or record["channel"])
    record["host"] = str(values.get("MachineName") or record["host"])
    record["user"] = str(values.get("UserId") or "")
    record["activity_id"] = guid_text(values.get("ActivityId"))
    record["rendered_message"] = str(values.get("Message") or "")
    record["rendered_level"] = str(values.get("LevelDisplayName") or "")
    record["rendered_task"] = str(values.get("TaskDisplayName") or "")


def guid_text(value: object) -> str:
    """'{UPPER-CASE}' as RECORD_FIELDS wants ActivityID, from PowerShell's bare lower-case GUID."""
    text = str(value or "").strip().strip("{}").upper()
    return "{" + text + "}" if text else ""


@dataclass
class Failures:
    """Records of an export that could not be read: counted on the entry, the first few located."""

    entry: InputEntry
    located: list[str] = field(default_factory=list)

    def add(self, where: str, reason: str) -> None:
        self.entry.records_failed += 1
        if len(self.located) < MAX_LOCATED_FAILURES:
            self.located.append(f"{where}: {reason}")

    def finish(self) -> None:
        for text in self.located:
            self.entry.warn(text)
        hidden = self.entry.records_failed - len(self.located)
        if hidden > 0:
            self.entry.warn(f"... and {hidden} more unreadable record(s)")
        if self.entry.records_failed:
            self.entry.degrade(f"{self.entry.records_failed} record(s) could not be read")


def host_and_channel(source: Source) -> tuple[str, str, str | None]:
    """(host, channel, warning) for an export that names neither (Event Viewer CSV): from the file
    name's layout, else the host from the folder the file sits in (said in the warning)."""
    channel = source.channel_hint or ""
    if source.host_hint:
        return source.host_hint, channel, None
    parts = re.split(r"[/\\!]", source.display)
    folder = parts[-2] if len(parts) >= 2 else ""
    if folder and not folder.lower().endswith(".zip"):
        return (
            folder,
            channel,
            (f"the file names no computer: host taken from its folder name '{folder}' (a guess)"),
        )
    return "", channel, "the file names no computer and no host could be told: host left unknown"


def counted(records: Iterator[dict], entry: InputEntry) -> Iterator[dict]:
    """Count each record on the entry and collect its host and channel as it passes."""
    hosts, channels = set(entry.hosts), set(entry.channels)
    try:
        for record in records:
            entry.records += 1
            hosts.add(str(record["host"]))
            channels.add(str(record["channel"]))
            yield record
    finally:
        entry.hosts = sorted(h for h in hosts if h)
        entry.channels = sorted(c for c in channels if c)


RecordsOf = Callable[[Source, InputEntry, LocalTimes, Failures], Iterator[dict]]


def read_file(
    kind: str,
    records: RecordsOf,
    source: Source,
    entry: InputEntry,
    source_tz: str | None,
    broken: tuple[type[Exception], ...] = (),
) -> Iterator[dict]:
    """Run a reader's `records` over one file with the accounting every export reader needs: records
    counted, failures listed, local times noted, a broken file degraded where it broke, never raised."""
    entry.format = kind
    local = LocalTimes(entry, source, zone_of(source_tz))
    failures = Failures(entry)
    try:
        yield from counted(records(source, entry, local, failures), entry)
    except broken as exc:
        entry.degrade(f"{kind.upper()} broken after {entry.records} record(s): {exc}; the rest is not read")
    except OSError as exc:
        entry.degrade(f"read error: {exc.strerror or exc}")
    finally:
        failures.finish()
        local.finish()
