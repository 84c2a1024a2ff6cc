"""Times for display, and the geometry of an incident timeline (one lane per host) as plain data.

The HTML template draws the SVG from this data, so every text in it goes through autoescaping.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from evtxcorr.errors import EvtxcorrError

WIDTH = 1000  # SVG user units; the SVG scales to the page width
LANE_LABEL_WIDTH = 150
RIGHT_PAD = 24
AXIS_HEIGHT = 34
LABEL_ROW_HEIGHT = 13
LABEL_CHAR_WIDTH = 6.1  # average width of a 10.5px label glyph, to keep labels from overlapping
TICK_STEPS_S = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 43200, 86400)
ROLE_RANK = {"required": 0, "refuting": 1, "supporting": 2}


def zone(name: str) -> ZoneInfo:
    """The IANA zone `name`, or an EvtxcorrError naming the bad value."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise EvtxcorrError(f"unknown time zone {name!r} (use an IANA name such as 'Asia/Tokyo')") from error


def iso_utc(moment: datetime) -> str:
    """'2026-09-15T14:37:41.512000Z' from an aware datetime (or pandas Timestamp)."""
    if moment.tzinfo is None:
        raise ValueError(f"naive datetime {moment!r}: times must be timezone-aware")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def local_text(iso: str | None, tz: str, *, date: bool = True) -> str:
    """'2026-09-15 23:37:41.512' in zone `tz` (milliseconds; the zone is named in the header)."""
    if not iso:
        return ""
    moment = parse_iso(iso).astimezone(zone(tz))
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f" if date else "%H:%M:%S.%f")[:-3]


def offset_text(moment: datetime, tz: str) -> str:
    """'+09:00' (the zone's UTC offset at `moment`)."""
    offset = moment.astimezone(zone(tz)).utcoffset() or timedelta(0)
    sign = "-" if offset < timedelta(0) else "+"
    minutes = abs(int(offset.total_seconds())) // 60
    return f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def zone_offsets(moments: Iterable[datetime], tz: str) -> list[str]:
    """Distinct UTC offsets of `tz` over the given moments, in order (two when DST changes)."""
    seen: list[str] = []
    for moment in moments:
        text = offset_text(moment, tz)
        if text not in seen:
            seen.append(text)
    return seen


def _tick_step(span_s: float) -> int:
    return next((step for step in TICK_STEPS_S if span_s / step <= 8), TICK_STEPS_S[-1])


def _ticks(t0: datetime, t1: datetime, tz: str, x_of) -> list[dict[str, object]]:  # type: ignore[no-untyped-def]
    step = _tick_step((t1 - t0).total_seconds())
    local0 = t0.astimezone(zone(tz))
    midnight = local0.replace(hour=0, minute=0, second=0, microsecond=0)
    elapsed = (local0 - midnight).total_seconds()
    first = midnight + timedelta(seconds=(int(elapsed) // step + 1) * step)
    ticks = []
    moment = first
    while moment <= t1:
        fmt = "%H:%M:%S" if step < 60 else "%H:%M"
        ticks.append({"x": x_of(moment), "label": moment.strftime(fmt)})
        moment += timedelta(seconds=step)
    return ticks


def _strongest_role(cited: Sequence[Mapping[str, object]]) -> str | None:
    roles = sorted((str(c["role"]) for c in cited), key=lambda role: ROLE_RANK.get(role, 9))
    return roles[0] if roles else None


def _short_provider(provider: str) -> str:
    return provider.removeprefix("Microsoft-Windows-")


def _place_labels(labels: list[dict[str, object]]) -> int:
    """Give each label a row so that labels in one row do not overlap; return the row count."""
    row_ends: list[float] = []
    for label in sorted(labels, key=lambda item: float(item["x"])):  # type: ignore[arg-type]
        start = float(label["x"]) - 3  # type: ignore[arg-type]
        end = start + len(str(label["text"])) * LABEL_CHAR_WIDTH + 8
        row = next((i for i, row_end in enumerate(row_ends) if row_end < start), len(row_ends))
        if row == len(row_ends):
            row_ends.append(end)
        row_ends[row] = end
        label["row"] = row
    return len(row_ends)


def _lane_key(event_or_host: Mapping[str, object] | str) -> str:
    """Lanes join a host's logs by short lower-case name (model.DERIVED_COLUMNS host_key)."""
    if isinstance(event_or_host, str):
        return event_or_host.split(".")[0].lower()
    return str(event_or_host.get("host_key") or _lane_key(str(event_or_host["host"])))


def _lane_names(events: Sequence[Mapping[str, object]], hosts: Sequence[str]) -> dict[str, str]:
    """Lane key -> label (the host name as the logs write it), incident hosts first."""
    seen = {_lane_key(ev): str(ev["host"]) for ev in reversed(events)}
    keys = dict.fromkeys([*(_lane_key(h) for h in hosts), *(_lane_key(ev) for ev in events)])
    fallback = {_lane_key(h): h for h in hosts}
    return {key: seen.get(key, fallback.get(key, key)) for key in keys}


def build(
    events: Sequence[Mapping[str, object]],
    start: str,
    end: str,
    hosts: Sequence[str],
    tz: str,
    offsets: Mapping[str, float] | None = None,
) -> dict[str, object]:
    """Geometry of one incident: lanes per host, event marks, labels for cited records, axis ticks.

    `events` are report EVENT dicts (time, host, provider, event_id, level, cited, row); one without a
    time cannot be placed and is left out (the tables still list it). `offsets` (host key -> measured
    clock offset, s) places each host's marks on the reference clock, so the lanes line up; tooltips
    keep the logged time.
    """
    offsets = offsets or {}
    events = [ev for ev in events if ev.get("time")]
    begin, finish = parse_iso(start), parse_iso(end)
    times = [parse_iso(str(ev["time"])) - timedelta(seconds=offsets.get(_lane_key(ev), 0.0)) for ev in events]
    lo, hi = min([begin, *times]), max([finish, *times])
    pad = max((hi - lo) * 0.04, timedelta(seconds=2)) if hi > lo else timedelta(seconds=30)
    t0, t1 = lo - pad, hi + pad
    plot_width = WIDTH - LANE_LABEL_WIDTH - RIGHT_PAD

    def x_of(moment: datetime) -> float:
        return round(LANE_LABEL_WIDTH + (moment - t0) / (t1 - t0) * plot_width, 1)

    names = _lane_names(events, hosts)
    lanes, marks, labels = [], [], []
    top = AXIS_HEIGHT
    for key, host in names.items():
        lane_events = [(ev, t) for ev, t in zip(events, times, strict=True) if _lane_key(ev) == key]
        lane_labels = []
        for ev, moment in lane_events:
            role = _strongest_role(ev.get("cited", ()))  # type: ignore[arg-type]
            if role:
                lane_labels.append(
                    {
                        "x": x_of(moment),
                        "role": role,
                        "text": f"{_short_provider(str(ev['provider']))} {ev['event_id']}",
                    }
                )
        rows = _place_labels(lane_labels)
        base = top + 14 + rows * LABEL_ROW_HEIGHT
        for label in lane_labels:
            label_y = top + 12 + int(label["row"]) * LABEL_ROW_HEIGHT  # type: ignore[call-overload]
            labels.append({**label, "y": label_y, "line_y1": label_y + 2, "line_y2": base - 6})
        for ev, moment in lane_events:
            role = _strongest_role(ev.get("cited", ()))  # type: ignore[arg-type]
            level = ev.get("level")
            marks.append(
                {
                    "x": x_of(moment),
                    "y": base,
                    "r": 6 if role else 3.5,
                    "row": ev["row"],
                    "cited": bool(role),
                    "cls": f"role-{role}" if role else f"lv-{level if level in (1, 2, 3) else 4}",
                    "time": ev["time"],
                    "label": f"{ev['provider']} {ev['event_id']}",
                }
            )
        height = base - top + 14
        offset = offsets.get(key)
        lanes.append({"host": host, "y": top, "height": height, "base": base, "offset": offset})
        top += height
    return {
        "width": WIDTH,
        "height": top + 6,
        "axis_y": AXIS_HEIGHT - 8,
        "plot_left": LANE_LABEL_WIDTH,
        "plot_right": WIDTH - RIGHT_PAD,
        "span": {
            "x": x_of(begin),
            "width": max(x_of(finish) - x_of(begin), 2.0),
            "y": AXIS_HEIGHT,
            "height": top - AXIS_HEIGHT,
        },
        "ticks": _ticks(t0, t1, tz, x_of),
        "lanes": lanes,
        "marks": marks,
        "labels": labels,
        "first_tick_date": t0.astimezone(zone(tz)).strftime("%Y-%m-%d"),
    }
