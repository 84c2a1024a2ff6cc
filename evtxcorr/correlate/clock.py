"""Node clock offsets, measured from events that several nodes log for the same moment.

Settings `clock` (rules/settings.yaml) name the pairings, as data:

- `moments`: detections that every node logs for one cluster-wide moment (a network interface changing
  state, a node leaving the membership), told apart by a payload `key` (the interface, the node). Two
  nodes' records of one moment differ by their clock offsets, give or take `spread_s`.
- `lags`: a detection on node X (`first`, e.g. its link going down) followed on other nodes by one that
  names X in `node_field` (`then`, e.g. 1126 about X's interface) `lag_s: [lo, hi]` later.

Every pairing of two nodes' records gives an interval for the difference of their offsets. A pair's
intervals are intersected (when they disagree, the median is taken and the interval widened to cover
them all); pairs chain from a reference node (the best-connected one) along the tightest path, adding
uncertainties. Only nodes reached that way get an offset: nothing is claimed for the others. Raw times
stay in the table and in citations; `aligned_ns` gives the times on the reference clock.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from evtxcorr.model import ClockOffset

NS = 1_000_000_000


@dataclass(frozen=True)
class Moment:
    """Detections several nodes log for one moment, told apart by the value of `key`."""

    name: str
    detections: tuple[str, ...]
    key: str  # paramN
    spread_s: float


@dataclass(frozen=True)
class Lag:
    """`first` on node X, then `then` on another node naming X in `node_field`, lo..hi seconds later."""

    name: str
    first: str
    then: str
    node_field: str  # paramN of `then` naming the node that logged `first`
    lag_s: tuple[float, float]


@dataclass(frozen=True)
class ClockSettings:
    moments: tuple[Moment, ...] = ()
    lags: tuple[Lag, ...] = ()
    max_offset_s: float = 900.0  # records further apart are never one moment


def clock_settings(raw: Mapping[str, object]) -> ClockSettings:
    """ClockSettings from the checked `clock` section of the rules' settings."""
    return ClockSettings(
        moments=tuple(
            Moment(m["name"], tuple(m["detections"]), m["key"], float(m["spread_s"]))
            for m in raw.get("moments", ())
        ),  # type: ignore[index, union-attr]
        lags=tuple(
            Lag(g["name"], g["first"], g["then"], g["node_field"], tuple(g["lag_s"]))
            for g in raw.get("lags", ())
        ),  # type: ignore[index, union-attr, arg-type]
        max_offset_s=float(raw.get("max_offset_s", 900.0)),  # type: ignore[arg-type]
    )


@dataclass(frozen=True)
class _Bound:
    """o[a] - o[b] lies in [lo, hi] (seconds), from one pairing of records."""

    a: str
    b: str
    lo: float
    hi: float
    basis: str


def _param(frame: pd.DataFrame, rows: Sequence[int], field: str) -> pd.Series:
    index = int(field.removeprefix("param")) - 1
    values = frame.loc[list(rows), "data"].str.get(index)
    return values.astype(object).where(values.notna(), "").astype(str).str.strip().str.lower()


def _signal_rows(signals: Mapping[int, tuple[str, ...]], names: Sequence[str]) -> list[int]:
    wanted = set(names)
    return [row for row, matched in signals.items() if wanted.intersection(matched)]


def _records(frame: pd.DataFrame, rows: list[int]) -> pd.DataFrame:
    table = frame.loc[rows, ["time", "host_key", "event_id"]].copy()
    table["ns"] = table["time"].to_numpy(dtype="datetime64[ns]").astype(np.int64)
    return table[table["time"].notna()]


def _nearest(times: np.ndarray, t: int) -> int:
    """Index of the value of sorted `times` nearest to t."""
    i = int(np.searchsorted(times, t))
    candidates = [j for j in (i - 1, i) if 0 <= j < len(times)]
    return min(candidates, key=lambda j: abs(int(times[j]) - t))


def _moment_bounds(
    frame: pd.DataFrame, signals: Mapping[int, tuple[str, ...]], moment: Moment, limit_ns: int
) -> list[_Bound]:
    rows = _signal_rows(signals, moment.detections)
    if not rows:
        return []
    table = _records(frame, rows)
    table["key"] = _param(frame, table.index.tolist(), moment.key)
    table = table[table["key"] != ""]
    bounds = []
    for _key, group in table.groupby(["event_id", "key"]):
        hosts = sorted(group["host_key"].unique())
        times = {h: np.sort(group.loc[group["host_key"] == h, "ns"].to_numpy()) for h in hosts}
        for i, a in enumerate(hosts):
            for b in hosts[i + 1 :]:
                for t in times[a]:
                    u = times[b][_nearest(times[b], int(t))]
                    if abs(int(t) - int(u)) <= limit_ns:
                        d = (int(t) - int(u)) / NS
                        bounds.append(_Bound(a, b, d - moment.spread_s, d + moment.spread_s, moment.name))
    return bounds


def _lag_bounds(
    frame: pd.DataFrame, signals: Mapping[int, tuple[str, ...]], lag: Lag, limit_ns: int
) -> list[_Bound]:
    firsts, thens = _signal_rows(signals, [lag.first]), _signal_rows(signals, [lag.then])
    if not firsts or not thens:
        return []
    first, then = _records(frame, firsts), _records(frame, thens)
    then["named"] = _param(frame, then.index.tolist(), lag.node_field).str.split(".").str[0]
    lo, hi = lag.lag_s
    bounds = []
    for host, mine in first.groupby("host_key"):
        times = np.sort(mine["ns"].to_numpy())
        # one link going down may be logged twice (NIC driver, then Tcpip): the burst starts the lag
        starts = times[np.concatenate([[True], np.diff(times) > lo * NS])]
        others = then[(then["named"] == host) & (then["host_key"] != host)]
        for _row, record in others.iterrows():
            t = int(record["ns"])
            s = int(starts[_nearest(starts, t - int((lo + hi) / 2 * NS))])
            d = (t - s) / NS  # = lag + o[then host] - o[first host]
            if abs(t - s) <= limit_ns + hi * NS:
                bounds.append(_Bound(str(record["host_key"]), str(host), d - hi, d - lo, lag.name))
    return bounds


def _pair_estimates(bounds: list[_Bound]) -> dict[tuple[str, str], tuple[float, float, int, tuple[str, ...]]]:
    """(a, b) with a < b -> (center, half-width, observations, basis) of o[a] - o[b]."""
    by_pair: dict[tuple[str, str], list[tuple[float, float]]] = {}
    basis: dict[tuple[str, str], set[str]] = {}
    for bound in bounds:
        lo, hi, key = bound.lo, bound.hi, (bound.a, bound.b)
        if bound.a > bound.b:
            lo, hi, key = -bound.hi, -bound.lo, (bound.b, bound.a)
        by_pair.setdefault(key, []).append((lo, hi))
        basis.setdefault(key, set()).add(bound.basis)
    out = {}
    for key, intervals in by_pair.items():
        lo, hi = max(i[0] for i in intervals), min(i[1] for i in intervals)
        if lo <= hi:  # consistent: the intersection
            center, half = (lo + hi) / 2, (hi - lo) / 2
        else:  # the records disagree more than the pairings allow: median, widened to cover all
            centers = sorted((i[0] + i[1]) / 2 for i in intervals)
            center = float(np.median(centers))
            half = max(max(i[1] - i[0] for i in intervals) / 2, (centers[-1] - centers[0]) / 2)
        out[key] = (center, half, len(intervals), tuple(sorted(basis[key])))
    return out


def estimate(
    frame: pd.DataFrame, signals: Mapping[int, tuple[str, ...]], settings: ClockSettings
) -> list[ClockOffset]:
    """Offsets of the nodes that events tie to a reference node; [] when no such events exist."""
    limit_ns = int(settings.max_offset_s * NS)
    bounds: list[_Bound] = []
    for moment in settings.moments:
        bounds += _moment_bounds(frame, signals, moment, limit_ns)
    for lag in settings.lags:
        bounds += _lag_bounds(frame, signals, lag, limit_ns)
    pairs = _pair_estimates(bounds)
    if not pairs:
        return []
    edges: dict[str, list[tuple[str, float, float, int, tuple[str, ...]]]] = {}
    for (a, b), (center, half, count, basis) in pairs.items():
        edges.setdefault(a, []).append((b, -center, half, count, basis))  # o[b] - o[a] = -(o[a] - o[b])
        edges.setdefault(b, []).append((a, center, half, count, basis))
    reference = max(sorted(edges), key=lambda h: (len(edges[h]), sum(e[3] for e in edges[h])))
    return _from_reference(reference, edges)


def _from_reference(reference: str, edges: Mapping[str, list]) -> list[ClockOffset]:
    """Tightest path (smallest summed uncertainty) from the reference to each node it reaches."""
    best: dict[str, tuple[float, float, int, frozenset[str]]] = {reference: (0.0, 0.0, 0, frozenset())}
    queue: list[tuple[float, str]] = [(0.0, reference)]
    done: set[str] = set()
    while queue:
        half, host = heapq.heappop(queue)
        if host in done:
            continue
        done.add(host)
        offset, _, count, basis = best[host]
        for other, delta, edge_half, edge_count, edge_basis in edges.get(host, []):
            total = half + edge_half
            if other not in best or total < best[other][1]:
                best[other] = (offset + delta, total, count + edge_count, basis | set(edge_basis))
                heapq.heappush(queue, (total, other))
    return [
        ClockOffset(host, round(offset, 3), round(half, 3), reference, count, tuple(sorted(basis)))
        for host, (offset, half, count, basis) in sorted(best.items())
    ]


def offsets_s(clock: Sequence[ClockOffset]) -> dict[str, float]:
    """Host key -> measured offset in seconds (logged minus reference clock)."""
    return {c.host: c.offset_s for c in clock}


def aligned_ns(times_ns: np.ndarray, host_keys: np.ndarray, offsets: Mapping[str, float]) -> np.ndarray:
    """Times (int64 ns) on the reference clock: each host's measured offset taken off; hosts without
    a measured offset keep their logged time."""
    shift = np.array([offsets.get(str(h), 0.0) for h in host_keys], dtype=np.float64)
    return np.asarray(times_ns, dtype=np.int64) - np.round(shift * NS).astype(np.int64)
