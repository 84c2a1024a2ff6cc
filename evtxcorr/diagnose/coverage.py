"""Which logs the bundle holds, and whether one can vouch that an event did NOT happen in a window.

Absence is evidence only where the log that would have recorded the event was collected and spans
the time in question. A host whose System log is missing, or starts after the window, cannot vouch.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

import pandas as pd

Span = tuple[datetime, datetime]


@dataclass(frozen=True)
class Coverage:
    """(host_key, channel) -> (first, last) record time of the log the bundle holds.

    `slack_s`: a log whose last record is at most this long before the window's end still vouches
    (a quiet log simply has nothing to say after its last record); its start must precede the window.
    """

    spans: Mapping[tuple[str, str], Span] = field(default_factory=dict)
    slack_s: float = 0.0

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, slack_s: float = 0.0) -> Coverage:
        if frame.empty:
            return cls({}, slack_s)
        grouped = frame.groupby(["host_key", "channel"], sort=True)["time"].agg(["min", "max"])
        spans = {key: (row["min"], row["max"]) for key, row in grouped.iterrows()}
        return cls(spans, slack_s)

    def extended(self, more: Iterable[tuple[tuple[str, str], Span]]) -> Coverage:
        """This coverage with more (host_key, channel) spans merged in: records counted from their
        headers but never decoded (selective parsing) still vouch for the time they span."""
        spans = dict(self.spans)
        for key, (lo, hi) in more:
            if key in spans:
                lo, hi = min(lo, spans[key][0]), max(hi, spans[key][1])
            spans[key] = (lo, hi)
        return Coverage(spans, self.slack_s)

    def hosts(self) -> set[str]:
        return {host for host, _channel in self.spans}

    def covers(self, host: str, channels: Iterable[str], lo: datetime, hi: datetime) -> bool:
        """True if some log of `host` on one of `channels` (or with no channel) spans [lo, hi]."""
        slack = pd.Timedelta(seconds=self.slack_s)
        for channel in (*channels, ""):
            span = self.spans.get((host, channel))
            if span and span[0] <= lo and span[1] >= hi - slack:
                return True
        return False
