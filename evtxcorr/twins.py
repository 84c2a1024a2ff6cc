"""Part of the table stage: export rows that repeat a record read from a .evtx (or a finer export).

An export loses precision: a CSV gives times to the second (in local time, converted), the Event
Viewer CSV has no record id, host or channel, PowerShell prints typed payload values its own way or
not at all. So an export row is compared with the other rows at ITS precision: time floored to its
`time_unit_us`; record id, host and channel only where it has them (0 / ''); payload only between
readers that keep it value for value (EXACT_PAYLOAD_PARSERS, compared in a canonical form), never
where it is unknown. Rows that agree are paired one to one in time order. A paired export row is a
duplicate (dropped, counted on its input); a pair whose exact payloads differ is kept (table's own
dedup then counts it as a conflict: an XML export has the full identity). The .evtx always wins:
exports are matched against the .evtx rows, then against the exports already kept, finest first.
"""

from __future__ import annotations

import re

import pandas as pd

from evtxcorr.ledger import Ledger

__all__ = ["EXACT_PAYLOAD_PARSERS", "drop_export_twins", "is_export"]

# Readers whose payload values are the record's own, as the .evtx readers print them (modulo
# canonical_payload): compared when pairing. CSV and JSON exports print values the PowerShell way.
EXACT_PAYLOAD_PARSERS = frozenset({"evtx", "python-evtx", "xml-export"})
EXPORT_SUFFIX = "-export"

_GUID = re.compile(r"^\{?([0-9A-Fa-f]{8}(?:-[0-9A-Fa-f]{4}){3}-[0-9A-Fa-f]{12})\}?$")
_ISO_FRACTION = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)\.(\d+)Z$")


def is_export(frame: pd.DataFrame) -> pd.Series:
    """Rows read from an XML, CSV or JSON export."""
    return frame["parser"].astype(str).str.endswith(EXPORT_SUFFIX)


def _canonical_value(value: str) -> str:
    """One payload value as both renderings agree on it: Windows writes GUIDs '{lower}' and FILETIMEs
    with 7 or 9 digits, the Rust parser 'UPPER' without braces and 6 digits."""
    guid = _GUID.match(value)
    if guid:
        return guid.group(1).upper()
    moment = _ISO_FRACTION.match(value)
    if moment:
        return f"{moment.group(1)}.{moment.group(2)[:6].ljust(6, '0')}Z"
    return value


def canonical_payload(data: tuple[str, ...], binary: str) -> tuple[tuple[str, ...], str]:
    return tuple(_canonical_value(str(v)) for v in data), str(binary).upper()


def _shape(rows: pd.DataFrame) -> dict[str, object]:
    """What one export input can be compared on (its rows share a format)."""
    return {
        "unit": int(rows["time_unit_us"].max()),
        "record_id": bool((rows["record_id"] != 0).all()),
        "host": bool((rows["host"].astype(str) != "").all()),
        "channel": bool((rows["channel"].astype(str) != "").all()),
        "exact": bool(rows["parser"].isin(EXACT_PAYLOAD_PARSERS).all() and rows["payload_known"].all()),
    }


def _keys(rows: pd.DataFrame, shape: dict[str, object]) -> pd.DataFrame:
    """Identity at the export's precision, plus each row's rank among rows of equal identity."""
    keys = pd.DataFrame(index=rows.index)
    unit = int(shape["unit"])  # type: ignore[call-overload]
    keys["t"] = rows["time"] if unit <= 1 else rows["time"].dt.floor(f"{unit}us")
    keys["provider"] = rows["provider"].astype(str)
    keys["event_id"] = rows["event_id"]
    if shape["host"]:
        keys["host"] = rows["host_key"]
    if shape["channel"]:
        # loosely: a channel named by a file name may spell its '/' as '-' or '%4'
        keys["channel"] = rows["channel"].astype(str).str.lower().str.replace(r"[^0-9a-z]", "", regex=True)
    if shape["record_id"]:
        keys["record_id"] = rows["record_id"]
    columns = list(keys.columns)
    order = rows.sort_values(["time", "record_id"], kind="stable").index
    keys = keys.loc[order]
    keys["rank"] = keys.groupby(columns, sort=False, dropna=False).cumcount()
    keys["row"] = keys.index
    return keys.dropna(subset=["t"])


def _pairs(frame: pd.DataFrame, export_rows: pd.Index, candidates: pd.Index) -> pd.DataFrame:
    """(export row, candidate row) pairs of equal identity and rank."""
    rows = frame.loc[export_rows]
    shape = _shape(rows)
    pool = frame.loc[candidates]
    pool = pool[
        pool["event_id"].isin(rows["event_id"].unique()) & pool["provider"].isin(rows["provider"].unique())
    ]
    if pool.empty:
        return pd.DataFrame(columns=["row_x", "row_y"])
    mine, theirs = _keys(rows, shape), _keys(pool, shape)
    on = [c for c in mine.columns if c != "row"]
    return mine.merge(theirs, on=on, how="inner")[["row_x", "row_y"]]


def _differs(frame: pd.DataFrame, pairs: pd.DataFrame) -> pd.Series:
    """Per pair: both payloads exact and different (after canonical_payload)."""
    left, right = frame.loc[pairs["row_x"]], frame.loc[pairs["row_y"]]
    exact = (
        left["parser"].isin(EXACT_PAYLOAD_PARSERS).to_numpy()
        & right["parser"].isin(EXACT_PAYLOAD_PARSERS).to_numpy()
        & left["payload_known"].to_numpy()
        & right["payload_known"].to_numpy()
    )
    differs = [
        bool(both) and canonical_payload(ld, lb) != canonical_payload(rd, rb)
        for both, ld, lb, rd, rb in zip(
            exact, left["data"], left["binary"], right["data"], right["binary"], strict=True
        )
    ]
    return pd.Series(differs, index=pairs.index)


def _finer_first(frame: pd.DataFrame, exports: pd.Series) -> list[tuple[int, pd.Index]]:
    """Export inputs with their rows, the most precise first (then in input order)."""
    groups = frame.loc[exports].groupby("input_id", sort=True)
    ranked = []
    for input_id, rows in groups:
        shape = _shape(rows)
        lost = (not shape["exact"], not shape["record_id"], not shape["host"], not shape["channel"])
        ranked.append(((int(shape["unit"]), *lost, int(input_id)), int(input_id), rows.index))  # type: ignore[call-overload]
    return [(input_id, rows) for _, input_id, rows in sorted(ranked, key=lambda item: item[0])]


def drop_export_twins(frame: pd.DataFrame, ledger: Ledger) -> pd.DataFrame:
    """`frame` without export rows that repeat a kept row (see the module docstring), counted as
    duplicates on the exports' ledger entries. Needs the `host_key` column."""
    exports = is_export(frame)
    if not exports.any():
        return frame
    kept = pd.Series(True, index=frame.index)
    pool = ~exports  # what an export is compared with: the .evtx rows, then the exports done
    dropped = 0
    for input_id, rows in _finer_first(frame, exports):
        pairs = _pairs(frame, rows, frame.index[(kept & pool).to_numpy()])
        pool.loc[rows] = True
        if pairs.empty:
            continue
        twins = pairs.loc[~_differs(frame, pairs), "row_x"]
        kept.loc[twins] = False
        ledger.get(input_id).duplicates += len(twins)
        dropped += len(twins)
    if dropped:
        ledger.warn(
            f"{dropped} exported record(s) dropped: the same records were read from a .evtx "
            "or a more precise export"
        )
    return frame.loc[kept]
