"""JSON exports -> records: `Get-WinEvent | ConvertTo-Json` (an array, or one object for one event)
and one object per line (`ConvertTo-Json -Compress` in a loop).

Windows PowerShell 5.1 prints TimeCreated as '/Date(1694770661512)/' (ms since 1970, UTC: time to
the millisecond), PowerShell 7 as ISO 8601 with the local offset; both carry their zone. Properties
(the payload) survive only when -Depth reaches them: at the default depth 2 each is the type name
'System.Diagnostics.Eventing.Reader.EventProperty' (payload unknown); deeper, a list of {"Value": v},
read by position. A classic event's Binary is its last property, a byte array: taken as `binary` when
the event has the Classic keyword bit. Typed values come out the PowerShell way (numbers in decimal,
GUIDs bare), so only strings compare with the .evtx payload value for value.

Streaming: objects are decoded one at a time from a rolling buffer, never the whole document.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from evtxcorr.ledger import InputEntry
from evtxcorr.model import Source
from evtxcorr.parse.exports.common import (
    CLASSIC_KEYWORD,
    Failures,
    LocalTimes,
    fill_powershell,
    has_zone,
    head_text,
    open_text,
    parse_iso,
    parse_net_date,
    read_file,
    skeleton,
)

PARSER = "json-export"
READ_SIZE = 1 << 20
MAX_OBJECT = 64 << 20  # one event's JSON larger than this is taken as a broken file
MS_US = 1000
_FIRST_TIME = re.compile(r'"TimeCreated"\s*:\s*(?:\{[^{}]*?"value"\s*:\s*)?"([^"]*)"', re.IGNORECASE)
_SPACE = re.compile(r"[\s,]*")


def needs_zone(source: Source) -> bool:
    """When the first TimeCreated printed has no zone (a Select-Object with a formatted time)."""
    match = _FIRST_TIME.search(head_text(source.path))
    return bool(match and match.group(1).strip() and not has_zone(match.group(1).replace("\\/", "/")))


class _Buffer:
    """A window on the text: what is read and not yet decoded, and the line it starts on."""

    def __init__(self, text: Any) -> None:
        self.text, self.data, self.pos, self.line = text, "", 0, 1

    def fill(self) -> bool:
        """Read more behind what is left; False at the end of the file."""
        more = self.text.read(READ_SIZE)
        if not more:
            return False
        self.data, self.pos = self.data[self.pos :] + more, 0
        return True

    def skip(self) -> str:
        """Skip blanks and commas (refilling as needed); the next character, '' at the end."""
        while True:
            blank = _SPACE.match(self.data, self.pos)
            self.line += self.data.count("\n", self.pos, blank.end())
            self.pos = blank.end()
            if self.pos < len(self.data) or not self.fill():
                return self.data[self.pos : self.pos + 1]


def iter_objects(text: Any, entry: InputEntry) -> Iterator[tuple[int, dict]]:
    """(line, object) for each top-level object: the items of an array, or objects one after another."""
    decoder = json.JSONDecoder()
    buffer = _Buffer(text)
    buffer.fill()
    buffer.data = buffer.data.lstrip("\ufeff")
    if buffer.skip() == "[":
        buffer.pos += 1
    while buffer.skip() not in ("", "]"):
        try:
            value, end = decoder.raw_decode(buffer.data, buffer.pos)
        except json.JSONDecodeError as exc:
            if len(buffer.data) - buffer.pos > MAX_OBJECT or not buffer.fill():
                entry.degrade(
                    f"JSON not well-formed at line {buffer.line + buffer.data.count(chr(10), buffer.pos, exc.pos)}: "
                    f"{exc.msg}; "
                    "the rest is not read"
                )
                return
            continue
        items = value if isinstance(value, list) else [value]
        for item in items:
            if isinstance(item, dict):
                yield buffer.line, item
        buffer.line += buffer.data.count("\n", buffer.pos, end)
        buffer.pos = end


def _unwrap(value: Any) -> Any:
    """PowerShell objects that ConvertTo-Json prints as {..., "Value": v} (SecurityIdentifier,
    EventProperty) or {"value": v, "DateTime": ...} (a DateTime with extra members)."""
    if isinstance(value, dict):
        for key in ("Value", "value"):
            if key in value:
                return value[key]
    return value


def _text(value: Any) -> str:
    """A payload value as the .evtx readers print it, where PowerShell's form allows."""
    value = _unwrap(value)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list) and all(isinstance(v, int) and 0 <= v < 256 for v in value):
        return bytes(value).hex().upper()
    if isinstance(value, str):
        moment = parse_net_date(value)
        return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ") if moment else value
    if isinstance(value, list | dict):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _payload(properties: Any, keywords: str) -> tuple[tuple[str, ...], str] | None:
    """(data, binary) from Properties, or None when they are only type names (depth too low)."""
    if not isinstance(properties, list):
        return None
    if any(not isinstance(p, dict) for p in properties):
        return None
    values = [_unwrap(p) for p in properties]
    binary = ""
    classic = bool(keywords) and int(keywords, 16) & CLASSIC_KEYWORD
    if classic and values and isinstance(values[-1], list):
        binary = _text(values.pop())
    elif classic and values and values[-1] == "System.Byte[]":  # the byte array itself too deep
        values.pop()
    return tuple(_text(v) for v in values), binary


def _time(value: Any, local: LocalTimes) -> tuple[datetime, int]:
    text = str(_unwrap(value) or "")
    moment = parse_net_date(text)
    if moment is not None:
        return moment, MS_US
    parsed = parse_iso(text, local)
    if parsed is None:
        raise ValueError(f"unreadable TimeCreated {text!r}")
    return parsed


def _record(item: dict, record: dict, local: LocalTimes) -> None:
    record["time"], record["time_unit_us"] = _time(item["TimeCreated"], local)
    fill_powershell(
        record, {**item, "UserId": _unwrap(item.get("UserId")), "ActivityId": _unwrap(item.get("ActivityId"))}
    )
    payload = _payload(item.get("Properties"), str(record["keywords"]))
    record["payload_known"] = payload is not None
    if payload is not None:
        record["data"], record["binary"] = payload
        record["data_names"] = ("",) * len(payload[0])


def _records(source: Source, entry: InputEntry, local: LocalTimes, failures: Failures) -> Iterator[dict]:
    unknown_payload = 0
    with open_text(source.path, entry) as text:
        for index, (line, item) in enumerate(iter_objects(text, entry)):
            record = skeleton(entry, PARSER)
            record.update(host=source.host_hint or "", channel=source.channel_hint or "")
            record.update(chunk=index, offset=line)
            try:
                _record(item, record, local)
            except (ValueError, KeyError, TypeError) as exc:
                failures.add(f"object {index + 1} (line {line})", f"{type(exc).__name__}: {exc}")
                continue
            unknown_payload += not record["payload_known"]
            yield record
    if unknown_payload:
        entry.warn(
            f"{unknown_payload} record(s) without payload values (Properties printed as type names: "
            "ConvertTo-Json -Depth 3 or more keeps them)"
        )


def read(source: Source, entry: InputEntry, *, source_tz: str | None = None) -> Iterator[dict]:
    """Records of one JSON export, in file order (`chunk` = object index, `offset` = its line)."""
    return read_file("json", _records, source, entry, source_tz, ())
