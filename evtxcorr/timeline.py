"""`evtxcorr timeline`: the merged, time-ordered multi-host event table, written for the tools analysts
already use (FORMATS: csv, parquet, jsonl, timesketch), with provenance (file, record id) on each row.

Every record (the default) is streamed: each source is read once, rows are sorted in runs of RUN_ROWS
and spilled to a private temp folder, then the runs are merged (heapq) and written as they come, so
memory holds one run, not the bundle. The same record read twice (two copies of a log) is written
once, and an export's row is dropped where the .evtx (or a finer export) gives the same record, with
the rule of twins.py, applied within each second of the merged stream. `--matched` instead runs the
whole analysis and writes the rows a detection matched, with the detection names and incident ids.

Timesketch's importer needs `message`, `datetime` (ISO 8601 with zone) and `timestamp_desc`
(https://timesketch.org/guides/user/import-from-json-csv/); every other field is kept beside them.
"""

from __future__ import annotations

import csv
import heapq
import json
import pickle
import re
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any
from zoneinfo import ZoneInfo

from evtxcorr.errors import EvtxcorrError, InputError, OutputError
from evtxcorr.hosts import host_key
from evtxcorr.ledger import Ledger
from evtxcorr.model import Source
from evtxcorr.output import check_output_file, output_mode

__all__ = ["COLUMNS", "FORMATS", "TimelineResult", "neutralise", "write_timeline"]

RUN_ROWS = 50_000  # rows sorted in memory before a run is spilled to disk
BATCH_ROWS = 20_000  # rows per Parquet row group
TIMESTAMP_DESC = "Event Logged"
_MICROSECOND = timedelta(microseconds=1)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# Output columns, in order. `time` is ISO 8601 in the display zone (UTC by default).
COLUMNS: tuple[str, ...] = (
    "time", "host", "channel", "provider", "event_id", "level", "record_id", "message", "data",
    "binary", "user", "file", "chunk", "offset", "parser", "payload_known", "detections", "incidents",
)  # fmt: skip
# Fields kept from each record while sorting (a tuple each: compact in memory and on disk).
_KEPT = (
    "time", "host", "channel", "provider", "event_id", "level", "record_id", "data", "binary", "user",
    "file", "chunk", "offset", "parser", "payload_known", "rendered_message", "time_unit_us", "input_id",
)  # fmt: skip
_AT = {name: index for index, name in enumerate(_KEPT)}
_UNSAFE_START = ("=", "+", "-", "@", "\t", "\r")
_LOOSE = re.compile(r"[^0-9a-z]")


def neutralise(text: str) -> str:
    """A CSV cell that a spreadsheet would run as a formula (starting = + - @ TAB CR) gets a leading
    apostrophe (OWASP's CSV-injection advice); others are left as they are."""
    return "'" + text if text.startswith(_UNSAFE_START) else text


@dataclass
class TimelineResult:
    rows: int = 0
    duplicates: int = 0
    runs: int = 0
    ledger: Ledger = field(default_factory=Ledger)


# --- rows -----------------------------------------------------------------------------------------


def _row(record: dict) -> tuple:
    return tuple(record.get(name, _DEFAULTS.get(name)) for name in _KEPT)


_DEFAULTS: dict[str, Any] = {"payload_known": True, "rendered_message": "", "time_unit_us": 1}


def _order(row: tuple) -> tuple:
    return (
        row[_AT["time"]],
        host_key(str(row[_AT["host"]])),
        row[_AT["record_id"]],
        row[_AT["input_id"]],
    )


def _message(row: tuple, lang: str = "en") -> str:
    from evtxcorr.render.messages import event_message

    rendered = str(row[_AT["rendered_message"]] or "")
    if rendered:
        return rendered
    data = [str(v) for v in row[_AT["data"]]]
    return event_message(str(row[_AT["provider"]]), int(row[_AT["event_id"]]), data, lang) or " | ".join(data)


# --- sorted runs and the merge --------------------------------------------------------------------


def _spill(rows: list[tuple], folder: Path, number: int) -> Path:
    rows.sort(key=_order)
    path = folder / f"run-{number:05d}.pickle"
    with path.open("wb") as out:
        for row in rows:
            pickle.dump(row, out, protocol=pickle.HIGHEST_PROTOCOL)
    return path


def _replay(path: Path) -> Iterator[tuple]:
    with path.open("rb") as source:
        while True:
            try:
                yield pickle.load(source)  # noqa: S301 - our own file, written just before
            except EOFError:
                return


def _runs(records: Iterable[dict], folder: Path, result: TimelineResult) -> list[Path]:
    runs: list[Path] = []
    buffer: list[tuple] = []
    for record in records:
        buffer.append(_row(record))
        if len(buffer) >= RUN_ROWS:
            runs.append(_spill(buffer, folder, len(runs)))
            buffer = []
    if buffer:
        runs.append(_spill(buffer, folder, len(runs)))
    result.runs = len(runs)
    return runs


# --- one record once: exact copies and export twins, within each second ---------------------------


def _is_export(row: tuple) -> bool:
    return str(row[_AT["parser"]]).endswith("-export")


def _identity(row: tuple) -> tuple:
    return (str(row[_AT["host"]]).strip().lower(), row[_AT["channel"]], row[_AT["record_id"]], row[_AT["time"]],
            row[_AT["provider"]], row[_AT["event_id"]], tuple(row[_AT["data"]]), row[_AT["binary"]])  # fmt: skip


def _same(export: tuple, other: tuple, name: str) -> bool:
    """Equal host (short name) or channel (loosely spelled), or unknown ('') in the export."""
    mine, theirs = str(export[_AT[name]]), str(other[_AT[name]])
    if not mine:
        return True
    if name == "host":
        return host_key(mine) == host_key(theirs)
    return _LOOSE.sub("", mine.lower()) == _LOOSE.sub("", theirs.lower())


def _twin(export: tuple, other: tuple) -> bool:
    """Does `other` (of another input) give the record `export` gives, at the export's precision?
    The rule of twins.py, row by row."""
    if export[_AT["input_id"]] == other[_AT["input_id"]]:
        return False
    if (export[_AT["provider"]], export[_AT["event_id"]]) != (other[_AT["provider"]], other[_AT["event_id"]]):
        return False
    moment, unit = other[_AT["time"]], int(export[_AT["time_unit_us"]])
    if moment.replace(microsecond=moment.microsecond - moment.microsecond % unit) != export[_AT["time"]]:
        return False
    record_id = export[_AT["record_id"]]
    if record_id and record_id != other[_AT["record_id"]]:
        return False
    return _same(export, other, "host") and _same(export, other, "channel")


def _one_second(rows: list[tuple], result: TimelineResult) -> list[tuple]:
    """The rows of one second without repeats: .evtx rows first, exports paired to what is kept."""
    seen: set[tuple] = set()
    kept: list[tuple] = []
    exports: list[tuple] = []
    for row in rows:
        if _is_export(row):
            exports.append(row)
            continue
        identity = _identity(row)
        if identity in seen:
            result.duplicates += 1
            continue
        seen.add(identity)
        kept.append(row)
    paired: set[int] = set()
    exports.sort(key=lambda r: (int(r[_AT["time_unit_us"]]), r[_AT["input_id"]]))
    for row in exports:
        match = next((i for i, other in enumerate(kept) if i not in paired and _twin(row, other)), None)
        if match is not None:
            paired.add(match)
            result.duplicates += 1
            continue
        kept.append(row)  # unmatched: its own record, which a later copy may pair with
    kept.sort(key=_order)
    return kept


def _deduplicated(merged: Iterator[tuple], result: TimelineResult) -> Iterator[tuple]:
    bucket: list[tuple] = []
    second = None
    for row in merged:
        current = row[_AT["time"]].replace(microsecond=0)
        if current != second and bucket:
            yield from _one_second(bucket, result)
            bucket = []
        second = current
        bucket.append(row)
    if bucket:
        yield from _one_second(bucket, result)


# --- writers --------------------------------------------------------------------------------------


_COPIED = ("host", "channel", "provider", "event_id", "level", "record_id", "binary", "user", "file", "chunk",
           "offset", "parser")  # fmt: skip


def _out_row(
    row: tuple, zone: ZoneInfo, detections: Sequence[str] = (), incidents: Sequence[str] = ()
) -> dict[str, Any]:
    moment: datetime = row[_AT["time"]]
    out: dict[str, Any] = {"time": moment.astimezone(zone).isoformat(timespec="microseconds")}
    out.update({name: row[_AT[name]] for name in _COPIED})
    out.update(
        message=_message(row),
        data=list(row[_AT["data"]]),
        payload_known=bool(row[_AT["payload_known"]]),
        detections=list(detections),
        incidents=list(incidents),
        _utc=moment,
    )
    return out


def _write_csv(rows: Iterable[dict], out: IO[str]) -> None:
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    for row in rows:
        cells = []
        for column in COLUMNS:
            value = row[column]
            if isinstance(value, list):
                value = " | ".join(str(v) for v in value)
            cells.append(neutralise(value) if isinstance(value, str) else ("" if value is None else value))
        writer.writerow(cells)


def _write_jsonl(rows: Iterable[dict], out: IO[str]) -> None:
    for row in rows:
        out.write(json.dumps({c: row[c] for c in COLUMNS}, ensure_ascii=False) + "\n")


def _write_timesketch(rows: Iterable[dict], out: IO[str]) -> None:
    for row in rows:
        moment: datetime = row["_utc"]
        line = {
            "message": f"[{row['host']}] {row['provider']} {row['event_id']}: {row['message']}",
            "datetime": row["time"],
            "timestamp": (moment - _EPOCH) // _MICROSECOND,
            "timestamp_desc": TIMESTAMP_DESC,
            **{c: row[c] for c in COLUMNS if c not in ("time", "message")},
            "event_message": row["message"],
        }
        out.write(json.dumps(line, ensure_ascii=False) + "\n")


def _pyarrow() -> tuple[Any, Any]:
    """pyarrow and pyarrow.parquet, or an EvtxcorrError saying how to install them."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise EvtxcorrError("--format parquet needs pyarrow: pip install 'evtxcorr[parquet]'") from None
    return pa, pq


def _write_parquet(rows: Iterable[dict], path: Path, zone: ZoneInfo) -> None:
    pa, pq = _pyarrow()
    schema = pa.schema(
        [("time", pa.timestamp("us", tz=str(zone.key))), ("host", pa.string()), ("channel", pa.string()),
         ("provider", pa.string()), ("event_id", pa.int64()), ("level", pa.int64()), ("record_id", pa.int64()),
         ("message", pa.string()), ("data", pa.list_(pa.string())), ("binary", pa.string()), ("user", pa.string()),
         ("file", pa.string()), ("chunk", pa.int64()), ("offset", pa.int64()), ("parser", pa.string()),
         ("payload_known", pa.bool_()), ("detections", pa.list_(pa.string())), ("incidents", pa.list_(pa.string()))]
    )  # fmt: skip
    with pq.ParquetWriter(path, schema) as writer:
        batch: list[dict] = []
        written = 0
        for row in rows:
            batch.append({**{c: row[c] for c in COLUMNS}, "time": row["_utc"]})
            if len(batch) >= BATCH_ROWS:
                writer.write_table(pa.Table.from_pylist(batch, schema=schema))
                written, batch = written + len(batch), []
        if batch or not written:  # an empty timeline is still a file with the schema
            writer.write_table(pa.Table.from_pylist(batch, schema=schema))


TextWriter = Callable[[Iterable[dict], IO[str]], None]
FORMATS: dict[str, TextWriter | None] = {
    "csv": _write_csv,
    "jsonl": _write_jsonl,
    "timesketch": _write_timesketch,
    "parquet": None,  # binary, written by _write_parquet
}


def _write(rows: Iterable[dict], output: Path, fmt: str, zone: ZoneInfo) -> None:
    """Write to a temp file beside `output`, then move it into place (no half-written timeline). The
    file gets the mode a report would (output_mode); a write that fails names `output`."""
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        mode = output_mode(output)
        with tempfile.NamedTemporaryFile(
            dir=output.parent, prefix=f".{output.name}.", delete=False
        ) as handle:
            partial = Path(handle.name)
    except OSError as exc:
        raise OutputError(f"cannot write {output}: {exc.strerror or exc}") from None
    try:
        if fmt == "parquet":
            _write_parquet(rows, partial, zone)
        else:
            writer = FORMATS[fmt]
            assert writer is not None
            newline = "" if fmt == "csv" else "\n"
            with partial.open("w", encoding="utf-8-sig" if fmt == "csv" else "utf-8", newline=newline) as out:
                writer(rows, out)
        partial.chmod(mode)
        partial.replace(output)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise OutputError(f"cannot write {output}: {exc.strerror or exc}; no timeline written") from None
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


# --- the two modes --------------------------------------------------------------------------------


ProgressHook = Callable[[Source, int, bool], None]


def _every_record(paths: Sequence[Path], options: Any, zone: ZoneInfo, output: Path, fmt: str,
                  progress: ProgressHook | None, on_sources: Callable[[list[Source]], None] | None) -> TimelineResult:  # fmt: skip
    from evtxcorr.analyze import check_zones, read_all
    from evtxcorr.discover import discover
    from evtxcorr.summary import nothing_usable

    result = TimelineResult()
    with tempfile.TemporaryDirectory(prefix="evtxcorr-timeline-", dir=options.work_dir) as work:
        work_dir = Path(work)
        sources = discover(list(paths), result.ledger, work_dir=work_dir / "extract")
        if not sources:
            raise InputError(nothing_usable(result.ledger, paths) or "no event log in the inputs")
        if on_sources:
            on_sources(sources)
        check_zones(sources, options.source_tz)
        runs_dir = work_dir / "runs"
        runs_dir.mkdir()
        runs = _runs(read_all(sources, result.ledger, options, progress), runs_dir, result)
        merged = heapq.merge(*(_replay(run) for run in runs), key=_order)

        def rows() -> Iterator[dict]:
            for row in _deduplicated(merged, result):
                result.rows += 1
                yield _out_row(row, zone)

        _write(rows(), output, fmt, zone)
    return result


def _matched(paths: Sequence[Path], options: Any, zone: ZoneInfo, output: Path, fmt: str,
             progress: ProgressHook | None, on_sources: Callable[[list[Source]], None] | None) -> TimelineResult:  # fmt: skip
    from evtxcorr.analyze import analyze
    from evtxcorr.summary import nothing_usable

    report = analyze(list(paths), options, on_sources=on_sources, progress=progress)
    unusable = nothing_usable(report.ledger, paths)  # type: ignore[arg-type]
    if unusable:
        raise InputError(unusable)
    frame = report.frame
    incidents: dict[int, list[str]] = {}
    for incident in report.incidents:
        for row in incident.rows:
            incidents.setdefault(int(row), []).append(incident.id)
    wanted = sorted(int(row) for row in report.signals)
    result = TimelineResult(ledger=report.ledger)  # type: ignore[arg-type]

    def rows() -> Iterator[dict]:
        for index, record in zip(wanted, frame.loc[wanted].to_dict("records"), strict=True):  # type: ignore[attr-defined]
            record["time"] = record["time"].to_pydatetime()
            result.rows += 1
            yield _out_row(_row(record), zone, report.signals[index], incidents.get(index, ()))

    _write(rows(), output, fmt, zone)
    return result


def write_timeline(
    paths: Sequence[Path],
    output: Path,
    *,
    fmt: str = "csv",
    matched: bool = False,
    tz: str = "UTC",
    options: Any = None,
    progress: ProgressHook | None = None,
    on_sources: Callable[[list[Source]], None] | None = None,
) -> TimelineResult:
    """Write the timeline of every record under `paths` (or, `matched`, the rows a detection matched)
    to `output` in `fmt` (FORMATS). `options` is an analyze.Options (source_tz, work_dir, backend...)."""
    from evtxcorr.analyze import Options

    if fmt not in FORMATS:
        raise EvtxcorrError(f"unknown timeline format {fmt!r}; choose from {', '.join(FORMATS)}")
    try:
        zone = ZoneInfo(tz)
    except Exception as exc:  # noqa: BLE001 - ZoneInfo raises several kinds
        raise InputError(f"{tz!r} is not an IANA time zone") from exc
    options = options or Options()
    check_output_file(Path(output), paths)  # never an input: checked before anything is read
    if fmt == "parquet":
        _pyarrow()  # missing: said now, not after reading every log
    mode = _matched if matched else _every_record
    return mode(paths, options, zone, Path(output), fmt, progress, on_sources)
