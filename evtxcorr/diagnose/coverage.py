"""Which logs the bundle holds, and whether one can vouch that an event did NOT happen in a window.

Absence is evidence only where the log that would have recorded the event was collected and spans
the time in question. A host whose System log is missing, or starts after the window, cannot vouch;
nor can a log where records were lost (a damaged chunk, zeroed space: `InputEntry.holes`) for any window
touching the span they fell in. A log whose rows name no channel (an Event Viewer CSV named after no
channel) vouches for a channel only when it holds events of a provider that writes to that channel.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime

import pandas as pd

from evtxcorr.hosts import host_key
from evtxcorr.ledger import InputEntry

Span = tuple[datetime, datetime]
Hole = tuple[datetime | None, datetime | None]  # None: open on that side


def holes_by_log(entries: Iterable[InputEntry]) -> dict[tuple[str, str], tuple[Hole, ...]]:
    """(host_key, channel) -> the spans where records of a file of that log were lost."""
    holes: dict[tuple[str, str], list[Hole]] = {}
    for entry in entries:
        if entry.status == "skipped" or not entry.holes:
            continue
        for host in entry.hosts:
            for channel in entry.channels or [""]:
                holes.setdefault((host_key(host), channel), []).extend(entry.holes)
    return {key: tuple(value) for key, value in holes.items()}


@dataclass(frozen=True)
class Coverage:
    """(host_key, channel) -> (first, last) record time of the log the bundle holds.

    `slack_s`: a log whose last record is at most this long before the window's end still vouches
    (a quiet log simply has nothing to say after its last record); its start must precede the window.
    `holes`: (host_key, channel) -> spans where records were lost; no window touching one is vouched for.
    `unnamed`: host_key -> lower-case providers seen in its rows without a channel.
    """

    spans: Mapping[tuple[str, str], Span] = field(default_factory=dict)
    slack_s: float = 0.0
    holes: Mapping[tuple[str, str], tuple[Hole, ...]] = field(default_factory=dict)
    unnamed: Mapping[str, frozenset[str]] = field(default_factory=dict)

    @classmethod
    def from_frame(
        cls,
        frame: pd.DataFrame,
        slack_s: float = 0.0,
        holes: Mapping[tuple[str, str], tuple[Hole, ...]] | None = None,
    ) -> Coverage:
        if frame.empty:
            return cls({}, slack_s, dict(holes or {}))
        grouped = frame.groupby(["host_key", "channel"], sort=True)["time"].agg(["min", "max"])
        spans = {key: (row["min"], row["max"]) for key, row in grouped.iterrows()}
        bare = frame[frame["channel"] == ""]
        unnamed = {
            str(host): frozenset(str(p).lower() for p in providers)
            for host, providers in bare.groupby("host_key")["provider"].unique().items()
        }
        return cls(spans, slack_s, dict(holes or {}), unnamed)

    def extended(self, more: Iterable[tuple[tuple[str, str], Span]]) -> Coverage:
        """This coverage with more (host_key, channel) spans merged in: records counted from their
        headers but never decoded (selective parsing) still vouch for the time they span."""
        spans = dict(self.spans)
        for key, (lo, hi) in more:
            if key in spans:
                lo, hi = min(lo, spans[key][0]), max(hi, spans[key][1])
            spans[key] = (lo, hi)
        return replace(self, spans=spans)

    def hosts(self) -> set[str]:
        return {host for host, _channel in self.spans}

    def _holed(self, key: tuple[str, str], lo: datetime, hi: datetime) -> bool:
        return any((a is None or a <= hi) and (b is None or b >= lo) for a, b in self.holes.get(key, ()))

    def covers(
        self,
        host: str,
        channels: Iterable[str],
        lo: datetime,
        hi: datetime,
        providers: Iterable[str] = (),
    ) -> bool:
        """True if some log of `host` on one of `channels` spans [lo, hi] with no records lost in it. A
        log without a channel counts only when it holds events of one of `providers` (lower-case)."""
        slack = pd.Timedelta(seconds=self.slack_s)
        keys = [(host, channel) for channel in channels if channel]
        if self.unnamed.get(host, frozenset()) & set(providers):
            keys.append((host, ""))
        for key in keys:
            span = self.spans.get(key)
            if span and span[0] <= lo and span[1] >= hi - slack and not self._holed(key, lo, hi):
                return True
        return False
