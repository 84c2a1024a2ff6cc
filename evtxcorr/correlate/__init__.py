"""Stage 4: chain matched rows into incidents, across hosts.

Anchors are the rows matching a detection that some cause lists under `anchors` (the errors).
Sorted by time, consecutive anchors no more than `gap_s` apart (plus `skew_s` when they come from
different hosts, whose clocks may disagree by that much) open and extend one incident. An incident
then takes every signal row, on any host, within [first anchor - lookback - skew, last anchor +
lookahead + skew]. A row that falls in two incidents' reach goes to the one whose anchors are
nearest, so incidents never share rows.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from evtxcorr.correlate.clock import aligned_ns
from evtxcorr.model import Incident
from evtxcorr.ruleset import Ruleset


def _pick(value: float | None, default: float) -> float:
    return float(default if value is None else value)


def _signal_table(
    frame: pd.DataFrame, signals: Mapping[int, tuple[str, ...]], anchors: frozenset[str]
) -> pd.DataFrame:
    labels = list(signals)
    table = frame.loc[labels, ["time", "host_key"]].copy()
    table["anchor"] = [bool(anchors.intersection(signals[label])) for label in labels]
    table = table[table["time"].notna()]  # a damaged record without a time cannot be placed
    return table.sort_values("time", kind="stable")


def group_anchors(times: np.ndarray, hosts: np.ndarray, gap_s: float, skew_s: float) -> np.ndarray:
    """Group number of each anchor (anchors sorted by time): a new group starts at a long gap."""
    if len(times) == 0:
        return np.zeros(0, dtype=np.int64)
    gaps = np.diff(times).astype("timedelta64[ns]").astype(np.int64) / 1e9
    other_host = hosts[1:] != hosts[:-1]
    allowed = gap_s + np.where(other_host, skew_s, 0.0)
    return np.concatenate([[0], np.cumsum(gaps > allowed)])


def nearest_incident(
    times: np.ndarray, starts: np.ndarray, ends: np.ndarray, lo: np.ndarray, hi: np.ndarray
) -> np.ndarray:
    """For each time, the incident whose reach [lo, hi] holds it and whose anchors [start, end] are
    nearest; -1 if none. Incidents are in time order, so starts, ends, lo and hi all increase."""
    last_started = np.searchsorted(starts, times, side="right") - 1  # incident starting at/before t
    candidates = np.stack([last_started, last_started + 1])
    valid = (candidates >= 0) & (candidates < len(starts))
    index = np.clip(candidates, 0, len(starts) - 1)
    t = times[None, :]
    inside = valid & (lo[index] <= t) & (t <= hi[index])
    gap = np.maximum(starts[index] - t, t - ends[index]).astype(np.int64)
    gap = np.where(inside, gap, np.iinfo(np.int64).max)
    best = gap.argmin(axis=0)
    chosen = index[best, np.arange(len(times))]
    return np.where(inside.any(axis=0), chosen, -1)


def correlate(
    frame: pd.DataFrame,
    signals: Mapping[int, tuple[str, ...]],
    ruleset: Ruleset,
    *,
    gap_s: float | None = None,
    lookback_s: float | None = None,
    lookahead_s: float | None = None,
    skew_s: float | None = None,
    offsets: Mapping[str, float] | None = None,
) -> list[Incident]:
    """Incidents 'I1', 'I2'... in time order; `signals` is ruleset.match's row -> detections.
    `offsets` (host key -> measured clock offset, clock.py) puts every host on the reference clock."""
    settings = ruleset.settings
    gap = _pick(gap_s, settings.gap_s)
    before = _pick(lookback_s, settings.lookback_s)
    after = _pick(lookahead_s, settings.lookahead_s)
    skew = _pick(skew_s, settings.skew_s)
    if not signals:
        return []
    table = _signal_table(frame, signals, ruleset.anchor_detections())
    if offsets:  # measured clock offsets taken off (raw times stay in the frame and in citations)
        ns = aligned_ns(
            table["time"].to_numpy(dtype="datetime64[ns]").astype(np.int64),
            table["host_key"].to_numpy(),
            offsets,
        )
        table = table.assign(time=pd.to_datetime(ns, utc=True)).sort_values("time", kind="stable")
    anchors = table[table["anchor"]]
    if anchors.empty:
        return []
    times = anchors["time"].to_numpy(dtype="datetime64[ns]")
    groups = group_anchors(times, anchors["host_key"].to_numpy(), gap, skew)
    starts = pd.Series(times).groupby(groups).min().to_numpy()
    ends = pd.Series(times).groupby(groups).max().to_numpy()
    lo = starts - np.timedelta64(int((before + skew) * 1e9), "ns")
    hi = ends + np.timedelta64(int((after + skew) * 1e9), "ns")

    row_times = table["time"].to_numpy(dtype="datetime64[ns]")
    owner = nearest_incident(row_times, starts, ends, lo, hi)
    owner[np.flatnonzero(table["anchor"].to_numpy())] = groups  # an anchor stays in its own group

    return _incidents(table, owner, anchors.index.to_numpy(), groups, len(starts))


def _incidents(
    table: pd.DataFrame, owner: np.ndarray, anchor_labels: np.ndarray, groups: np.ndarray, count: int
) -> list[Incident]:
    """Build the Incident objects from each signal row's owner (-1: none) and each anchor's group."""
    order = np.argsort(owner, kind="stable")  # rows stay in time order within an incident
    bounds = np.searchsorted(owner[order], np.arange(count + 1))
    anchor_bounds = np.searchsorted(groups, np.arange(count + 1))  # groups are sorted already
    labels, times, hosts = table.index.to_numpy(), table["time"], table["host_key"].to_numpy()
    incidents = []
    for number in range(count):
        mine = order[bounds[number] : bounds[number + 1]]
        incidents.append(
            Incident(
                id=f"I{number + 1}",
                start=times.iloc[mine].min().to_pydatetime(),
                end=times.iloc[mine].max().to_pydatetime(),
                hosts=tuple(sorted(set(hosts[mine].tolist()))),
                rows=tuple(int(label) for label in labels[mine]),
                anchor_rows=tuple(
                    int(label) for label in anchor_labels[anchor_bounds[number] : anchor_bounds[number + 1]]
                ),
            )
        )
    return incidents
