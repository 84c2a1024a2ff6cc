"""table.py: columns and dtypes, host keys, dedup with ledger counts, order."""

from __future__ import annotations

import shutil
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from evtxcorr.discover import discover, entry_for
from evtxcorr.ledger import Ledger
from evtxcorr.model import COLUMNS, RECORD_FIELDS
from evtxcorr.parse import parse
from evtxcorr.table import host_keys, host_names, to_frame


def _record(**overrides) -> dict:
    base = {key: None for key in RECORD_FIELDS}
    base.update(
        time=datetime(2026, 9, 15, 14, 37, 41, 512000, tzinfo=UTC), host="HV01.contoso.local", channel="System",
        provider="NETLOGON", event_id=5719, qualifiers=0, level=2, task=0, keywords="0x80000000000000",
        record_id=1, user="", activity_id="", data=("CONTOSO", "%%1311"), data_names=("", ""),
        binary="5E0000C0", file="a.evtx", input_id=0, chunk=0, offset=4608, parser="evtx",
    )  # fmt: skip
    base.update(overrides)
    return base


def _analyse(paths: list[Path], tmp_path: Path) -> tuple[pd.DataFrame, Ledger]:
    ledger = Ledger()
    sources = discover(paths, ledger, work_dir=tmp_path / "work")
    records = [r for s in sources for r in parse(s, entry_for(ledger, s))]
    return to_frame(records, ledger), ledger


def test_columns_dtypes_and_derived() -> None:
    ledger = Ledger()
    ledger.add("a.evtx", records=2)
    frame = to_frame([_record(), _record(record_id=2, host="hv02", qualifiers=None, binary="")], ledger)
    assert tuple(frame.columns) == COLUMNS
    assert str(frame["time"].dtype) == "datetime64[ns, UTC]"
    assert frame["event_id"].dtype == "int64" and frame["offset"].dtype == "int64"
    assert str(frame["qualifiers"].dtype) == "Int64" and frame["qualifiers"].isna().tolist() == [False, True]
    assert frame["host_key"].tolist() == ["hv01", "hv02"]
    assert frame.loc[0, "data"] == ("CONTOSO", "%%1311")
    assert frame.loc[0, "codes"] == ("0xC000005E", "0x0000051F") and frame.loc[1, "codes"] == ("0x0000051F",)
    assert isinstance(frame.index, pd.RangeIndex)


def test_sort_and_dedup_on_host_channel_record_id() -> None:
    ledger = Ledger()
    a, b = ledger.add("a.evtx", records=3), ledger.add("b.evtx", records=2)
    late = datetime(2026, 9, 15, 15, 0, tzinfo=UTC)
    records = [
        _record(record_id=3, time=late),
        _record(record_id=1),
        _record(record_id=2, host="HV02.contoso.local"),
        _record(record_id=1, host="HV01.CONTOSO.LOCAL", input_id=1, parser="python-evtx"),  # same host
        _record(record_id=1, channel="Application", input_id=1),  # other channel: kept
    ]
    frame = to_frame(records, ledger)
    assert len(frame) == 4
    assert frame[["host_key", "record_id"]].values.tolist() == [
        ["hv01", 1], ["hv01", 1], ["hv02", 2], ["hv01", 3]
    ]  # fmt: skip
    assert set(frame["parser"]) == {"evtx"}
    assert (a.duplicates, b.duplicates, b.records) == (0, 1, 2)  # b read 2, kept 1


def test_issue_11_dedup_needs_the_same_host_time_and_event_not_just_the_record_id() -> None:
    ledger = Ledger()
    a, b = ledger.add("a.evtx"), ledger.add("b.evtx")
    later = datetime(2026, 10, 15, 14, 0, tzinfo=UTC)  # the log was cleared: record ids start again
    records = [
        _record(record_id=7),
        _record(record_id=7, host="HV01.fabrikam.local", input_id=1),  # another domain's HV01
        _record(record_id=7, time=later, provider="e1iexpress", event_id=27, data=("", "NIC"), input_id=1),
        _record(record_id=7, input_id=1),  # the same record again: the one duplicate
    ]
    frame = to_frame(records, ledger)
    assert len(frame) == 3
    assert sorted(frame["host"]) == ["HV01.contoso.local", "HV01.contoso.local", "HV01.fabrikam.local"]
    assert (a.duplicates, b.duplicates, a.conflicts, b.conflicts) == (0, 1, 0, 0)


def test_issue_11_same_identity_other_content_is_a_conflict_and_both_are_kept() -> None:
    ledger = Ledger()
    a, b = ledger.add("a.evtx"), ledger.add("b.evtx")
    frame = to_frame([_record(), _record(data=("CONTOSO", "%%5"), binary="220000C0", input_id=1)], ledger)
    assert len(frame) == 2 and sorted(frame["binary"]) == ["220000C0", "5E0000C0"]
    assert (a.duplicates, b.duplicates, b.conflicts, ledger.totals()["conflicts"]) == (0, 0, 1, 1)
    assert any("differ in content" in w for w in ledger.warnings)


def test_out_of_range_time_is_kept_empty_and_warned() -> None:
    ledger = Ledger()
    entry = ledger.add("a.evtx", records=2)
    frame = to_frame([_record(time=datetime(1601, 1, 1, tzinfo=UTC)), _record(record_id=2)], ledger)
    assert len(frame) == 2 and frame["time"].isna().tolist() == [False, True]
    assert any("outside 1677-2262" in w for w in entry.warnings)


@pytest.mark.parametrize(
    ("moment", "kept"),
    [
        (datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC), False),  # python's last moment
        (datetime(2262, 4, 12, tzinfo=UTC), False),  # a day past nanoseconds' reach
        (datetime(1677, 9, 20, tzinfo=UTC), False),
        (datetime(2262, 4, 10, tzinfo=UTC), True),
        (datetime(1677, 9, 22, tzinfo=UTC), True),
    ],
)
def test_times_nanoseconds_cannot_hold_are_empty(moment: datetime, kept: bool) -> None:
    ledger = Ledger()
    entry = ledger.add("a.evtx", records=1)
    frame = to_frame([_record(time=moment)], ledger)
    assert frame["time"].notna().tolist() == [kept]
    if kept:
        assert frame["time"].iloc[0].to_pydatetime() == moment
    assert any("outside 1677-2262" in w for w in entry.warnings) is not kept


def test_host_keys_are_short_lower_case_python_strings() -> None:
    hosts = pd.Series(
        ["HV01.contoso.local", "hv01", None, "HV02.Fabrikam.local", "HV01.contoso.local", " HV01 ", "HV03."],
        dtype=object,
    )
    keys = host_keys(hosts)
    # blanks around a (hostile) Computer name do not make another host: the key clusters, coverage
    # holes and file-name hints use too (hosts.host_key, one function for all of them)
    assert keys.tolist() == ["hv01", "hv01", "", "hv02", "hv01", "hv01", "hv03"]
    assert keys.dtype == object and keys.index.equals(hosts.index)


def test_empty_input() -> None:
    frame = to_frame([], Ledger())
    assert tuple(frame.columns) == COLUMNS and len(frame) == 0
    assert str(frame["time"].dtype) == "datetime64[ns, UTC]"


def test_same_log_twice_and_in_a_zip_counts_once(corpus_dir: Path, tmp_path: Path) -> None:
    original = corpus_dir / "security.evtx"
    (tmp_path / "in").mkdir()
    log = tmp_path / "in" / "Security.evtx"
    shutil.copy(original, log)
    shutil.copy(original, tmp_path / "in" / "Security-backup.evtx")
    with zipfile.ZipFile(tmp_path / "bundle.zip", "w", zipfile.ZIP_DEFLATED) as archive:
        archive.write(original, "HV01/Security.evtx")
    frame, ledger = _analyse([log, tmp_path / "in", tmp_path / "bundle.zip", log], tmp_path)
    single, _ = _analyse([log], tmp_path)
    assert len(frame) == len(single) == 2261
    totals = ledger.totals()
    # every file reports what it holds; all but the first copy are counted as duplicates
    assert totals["records"] == 3 * 2261 and totals["duplicates"] == 2 * 2261
    logs = [e for e in ledger.entries if e.format == "evtx"]
    assert [e.records for e in logs] == [2261, 2261, 2261]
    assert sorted(e.duplicates for e in logs) == [0, 2261, 2261]
    assert frame["time"].is_monotonic_increasing


def test_host_names_prefer_the_most_frequent_spelling() -> None:
    frame = to_frame(
        [
            _record(record_id=1, host="HV01.contoso.local"),
            _record(record_id=2, host="HV01.contoso.local"),
            _record(record_id=3, host="hv01"),
            _record(record_id=4, host="HV02.contoso.local"),
        ],
        Ledger(),
    )
    assert host_names(frame) == {"hv01": "HV01.contoso.local", "hv02": "HV02.contoso.local"}
    assert host_names(frame.iloc[0:0]) == {}


@given(st.text(alphabet=st.sampled_from(list(" .\\tHVhv01é-_")), max_size=12))
def test_host_key_is_split_hosts_key(name: str) -> None:
    from evtxcorr.hosts import host_key, split_host

    assert host_key(name) == split_host(name)[0]
