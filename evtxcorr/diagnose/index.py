"""A time index over the signal rows: for each (detection, host), the sorted times and rows of its hits.

Evidence is looked up here, over the whole signal table, never inside one incident's rows, so what a
cause finds around an anchor does not depend on how anchors were grouped into incidents.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

_EMPTY = np.zeros(0, dtype=np.int64)


@dataclass(frozen=True)
class Hits:
    """Hits of one detection on one host: times (int64 ns since the epoch, UTC) ascending, and rows."""

    ns: np.ndarray = field(default_factory=lambda: _EMPTY)
    rows: np.ndarray = field(default_factory=lambda: _EMPTY)

    def within(self, windows: np.ndarray) -> np.ndarray:
        """Rows of the hits inside any of `windows` (n x 2 int64 ns, inclusive bounds), sorted."""
        if not len(self.ns) or not len(windows):
            return _EMPTY
        lo = np.searchsorted(self.ns, windows[:, 0], side="left")
        hi = np.searchsorted(self.ns, windows[:, 1], side="right")
        picked = [self.rows[a:b] for a, b in zip(lo.tolist(), hi.tolist(), strict=True) if b > a]
        return np.unique(np.concatenate(picked)) if picked else _EMPTY


@dataclass(frozen=True)
class SignalIndex:
    """(detection, host_key) -> Hits, built once per analysis from `ruleset.match`'s row -> detections."""

    hits: Mapping[tuple[str, str], Hits]

    @classmethod
    def build(
        cls, frame: pd.DataFrame, signals: Mapping[int, tuple[str, ...]], hosts: Iterable[str] | None = None
    ) -> SignalIndex:
        """Rows without a time cannot be placed and are left out; `hosts` limits the index to them."""
        labels = [row for row in signals if row in frame.index]
        if not labels:
            return cls({})
        table = frame.loc[labels, ["time", "host_key"]]
        table = table[table["time"].notna()]
        if hosts is not None:
            table = table[table["host_key"].isin(set(hosts))]
        names = [signals[row] for row in table.index]
        repeat = np.fromiter((len(n) for n in names), dtype=np.int64, count=len(names))
        pairs = list(
            zip(
                (name for group in names for name in group),
                np.repeat(table["host_key"].to_numpy(dtype=object), repeat).tolist(),
                strict=True,
            )
        )
        if not pairs:
            return cls({})
        keys = sorted(set(pairs))  # (detection, host), each numbered in sorted order
        number = {key: position for position, key in enumerate(keys)}
        codes = np.fromiter((number[pair] for pair in pairs), dtype=np.int64, count=len(pairs))
        ns = np.repeat(table["time"].to_numpy(dtype="datetime64[ns]").astype(np.int64), repeat)
        rows = np.repeat(table.index.to_numpy(dtype=np.int64), repeat)
        order = np.lexsort((rows, ns, codes))  # by pair, then time, then row
        codes, ns, rows = codes[order], ns[order], rows[order]
        starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]]).tolist()
        ends = [*starts[1:], len(codes)]
        index = {
            (str(keys[codes[a]][0]), str(keys[codes[a]][1])): Hits(ns[a:b], rows[a:b])
            for a, b in zip(starts, ends, strict=True)
        }
        return cls(index)

    def get(self, detection: str, host: str) -> Hits:
        return self.hits.get((detection, host), Hits())

    def hosts(self) -> set[str]:
        return {host for _detection, host in self.hits}

    def anchors(self, detections: Iterable[str], host: str) -> Hits:
        """Every hit on `host` of any of `detections`, one entry per row, in time order."""
        parts = [self.get(name, host) for name in detections]
        ns = np.concatenate([p.ns for p in parts] + [_EMPTY])
        rows = np.concatenate([p.rows for p in parts] + [_EMPTY])
        rows, first = np.unique(rows, return_index=True)
        ns = ns[first]
        order = np.lexsort((rows, ns))
        return Hits(ns[order], rows[order])


def merge_windows(windows: np.ndarray) -> np.ndarray:
    """Overlapping or touching [lo, hi] windows (n x 2 int64) merged, sorted by lo."""
    if len(windows) <= 1:
        return windows
    windows = windows[np.argsort(windows[:, 0], kind="stable")]
    reach = np.maximum.accumulate(windows[:, 1])
    starts = np.concatenate([[True], windows[1:, 0] > reach[:-1]])
    group = np.cumsum(starts) - 1
    lo = windows[starts, 0]
    hi = np.full(len(lo), np.iinfo(np.int64).min, dtype=np.int64)
    np.maximum.at(hi, group, windows[:, 1])
    return np.stack([lo, hi], axis=1)
