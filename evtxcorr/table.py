"""Stage 3: record dicts -> the event table (pandas DataFrame with model.COLUMNS).

Dtypes are a table (DTYPES). A duplicate is the same record read twice (a log and its backup copy, or two
collections of one host): same DEDUP_KEY and same payload. The first row read is kept and the others
are counted on the ledger entry of the file they came from. Rows that share DEDUP_KEY but differ in
payload are all kept and counted as conflicts (a tampered or damaged copy): neither can be trusted
over the other. Rows are sorted by time, host, record id.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable

import pandas as pd

from evtxcorr.codes import extract_codes
from evtxcorr.hosts import host_key
from evtxcorr.ledger import Ledger
from evtxcorr.model import COLUMNS, EXPORT_FIELDS, RECORD_FIELDS
from evtxcorr.twins import drop_export_twins

__all__ = ["DTYPES", "DEDUP_KEY", "to_frame"]

# Column -> dtype; columns not listed stay as built (text, tuples as object).
DTYPES: dict[str, str] = {
    "time": "datetime64[ns, UTC]",
    "event_id": "int64",
    "record_id": "int64",
    "chunk": "int64",
    "offset": "int64",
    "input_id": "int64",
    "qualifiers": "Int64",
    "level": "Int64",
    "task": "Int64",
    "opcode": "Int64",
    "version": "Int64",
    "process_id": "Int64",
    "thread_id": "Int64",
    "payload_known": "bool",
    "time_unit_us": "int64",
}
TUPLE_COLUMNS = ("data", "data_names", "codes")
# A record's identity: full host name (hv01.contoso.local and hv01.fabrikam.local are two hosts), channel,
# record id, and, since record ids restart when a log is cleared, its time, provider and event id.
DEDUP_KEY = ["host_fqdn", "channel", "record_id", "time", "provider", "event_id"]
CONTENT = ["data", "binary"]  # same identity, other content: a conflict, not a duplicate
SORT_KEY = ["time", "host_key", "record_id"]


def host_keys(hosts: pd.Series) -> pd.Series:
    """Lower-case short host names (up to the first dot), as Python strings ('' for no name); each
    distinct name (a bundle has a handful, written thousands of times) worked out once."""
    keys: dict[object, str] = {}

    def key(host: object) -> str:
        found = keys.get(host)
        if found is None:
            found = keys[host] = host_key(host) if isinstance(host, str) else ""
        return found

    return pd.Series([key(host) for host in hosts], index=hosts.index, dtype=object)


def host_names(frame: pd.DataFrame) -> dict[str, str]:
    """Host key -> the host as its logs write it, the most frequent spelling when they differ."""
    names: dict[str, str] = {}
    if len(frame):
        for host_key, host in frame[["host_key", "host"]].value_counts().index:  # most frequent first
            names.setdefault(str(host_key), str(host))
    return names


def _codes(frame: pd.DataFrame) -> list[tuple[str, ...]]:
    """extract_codes of each row, once per distinct payload (events repeat theirs: about 3 rows in 5)."""
    known: dict[tuple[object, ...], tuple[str, ...]] = {}
    codes = []
    for key in zip(
        frame["provider"], frame["event_id"].tolist(), frame["data"], frame["binary"], strict=True
    ):
        found = known.get(key)
        if found is None:
            found = known[key] = extract_codes(*key)
        codes.append(found)
    return codes


def _count_per_input(input_ids: pd.Series, ledger: Ledger, counter: str) -> None:
    """Add each input's number of rows in `input_ids` to its ledger entry's `counter`."""
    for input_id, count in input_ids.value_counts().items():
        entry = ledger.get(int(input_id))
        setattr(entry, counter, getattr(entry, counter) + int(count))


def _drop_duplicates(frame: pd.DataFrame, ledger: Ledger) -> pd.DataFrame:
    """`frame` without records read twice; counts duplicates and conflicts on the ledger."""
    keyed = frame.assign(host_fqdn=frame["host"].str.strip().str.lower())
    identified = keyed["record_id"] != 0  # rows of an export without record ids are paired in twins.py
    if not (keyed.duplicated(subset=DEDUP_KEY, keep="first") & identified).any():
        return frame  # no identity twice (the usual bundle): neither duplicates nor conflicts
    duplicated = keyed.duplicated(subset=DEDUP_KEY + CONTENT, keep="first") & identified
    if duplicated.any():
        _count_per_input(frame.loc[duplicated, "input_id"], ledger, "duplicates")
        ledger.warn(f"{int(duplicated.sum())} duplicate record(s) dropped (the same record read twice)")
        keyed, frame = keyed.loc[~duplicated], frame.loc[~duplicated]
    conflicting = keyed.duplicated(subset=DEDUP_KEY, keep="first") & (keyed["record_id"] != 0)
    if conflicting.any():
        _count_per_input(frame.loc[conflicting, "input_id"], ledger, "conflicts")
        ledger.warn(
            f"{int(conflicting.sum())} record(s) share host, channel, record id and time with another "
            "but differ in content (tampered or damaged copies?): all copies kept"
        )
    return frame


def _times(frame: pd.DataFrame, ledger: Ledger) -> pd.Series:
    """UTC nanosecond times; a time nanoseconds cannot hold (FILETIME 0 is 1601) becomes NaT,
    warned about on the file's entry (the row is kept: it is a record read)."""
    low, high = pd.Timestamp.min.ceil("s").tz_localize("UTC"), pd.Timestamp.max.floor("s").tz_localize("UTC")
    times = pd.to_datetime(frame["time"], utc=True, errors="coerce")  # microseconds: years 1 to 9999
    outside = times.isna() | (times < low) | (times > high)
    if outside.any():
        for input_id, count in frame.loc[outside, "input_id"].value_counts().items():
            ledger.get(int(input_id)).warn(
                f"{count} record(s) with a time outside 1677-2262 (damaged?): time left empty"
            )
    return times.where(~outside).astype(DTYPES["time"])


def _empty() -> pd.DataFrame:
    frame = pd.DataFrame({column: pd.Series([], dtype=object) for column in COLUMNS})
    return frame.astype(DTYPES)


_BLOCK = 4096  # rows held as tuples before they are added to the columns


def _extend(columns: dict[str, list[object]], block: list[tuple[object, ...]]) -> None:
    """Add the rows of `block` (in the order of `columns`) to the columns; empties `block`."""
    for column, values in zip(columns.values(), zip(*block, strict=True), strict=False):
        column.extend(values)
    block.clear()


def to_frame(records: Iterable[dict], ledger: Ledger) -> pd.DataFrame:
    """The event table: exactly model.COLUMNS, deduplicated, sorted, with a fresh RangeIndex."""
    # Columns are filled as records stream in: holding every record dict at once costs several times
    # the memory of the values themselves.
    # Rows are taken a block at a time (one C-level itemgetter call per record) and turned into columns.
    columns: dict[str, list[object]] = {name: [] for name in (*RECORD_FIELDS, *EXPORT_FIELDS)}
    fields = operator.itemgetter(*RECORD_FIELDS)
    defaults = tuple(default for default, _ in EXPORT_FIELDS.values())
    block: list[tuple[object, ...]] = []
    for record in records:
        if len(record) == len(RECORD_FIELDS):  # no export fields (every .evtx record): their defaults
            block.append(fields(record) + defaults)
        else:
            block.append(
                fields(record)
                + tuple(record.get(name, default) for name, (default, _) in EXPORT_FIELDS.items())
            )
        if len(block) >= _BLOCK:
            _extend(columns, block)
    _extend(columns, block)
    # Text stays Python objects: pandas 3 would infer pyarrow strings where pyarrow is installed, and
    # those refuse what a file name can hold (os.fsdecode's lone surrogates from a Shift_JIS folder).
    frame = pd.DataFrame(columns, columns=list(columns), dtype=object)
    del columns
    if frame.empty:
        return _empty()
    frame["time"] = _times(frame, ledger)
    frame = frame.astype(DTYPES)
    frame["host_key"] = host_keys(frame["host"])
    frame = drop_export_twins(frame, ledger)
    frame = _drop_duplicates(frame, ledger)
    frame["codes"] = _codes(frame)
    frame = frame.sort_values(SORT_KEY, kind="stable").reset_index(drop=True)
    return frame[list(COLUMNS)]
