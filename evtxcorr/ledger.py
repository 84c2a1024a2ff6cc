"""The ledger: every input file and record is analysed or accounted for, with a reason.

Stages receive the ledger and write to it; nothing is global. A file's entry ends in one status:
'ok' (all records read), 'partial' (some records or chunks failed or the file is damaged) or
'skipped' (not analysed at all: not EVTX, empty, unsupported...), always with a reason when not ok.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime


@dataclass
class InputEntry:
    """Accounting for one input file (or one archive member)."""

    path: str  # display path ('bundle.zip!HV01/System.evtx'), made unique by Ledger.add
    id: int = -1  # position in Ledger.entries: the key every stage uses (display paths are for people)
    format: str = "unknown"  # 'evtx', 'zip', 'csv', 'txt', 'unknown'...
    status: str = "ok"  # ok | partial | skipped
    reason: str = ""
    size: int = 0
    hosts: list[str] = field(default_factory=list)
    channels: list[str] = field(default_factory=list)
    records: int = 0  # records parsed from this file (duplicates included: see `duplicates`)
    records_failed: int = 0  # records seen in the chunks (record headers) that no backend could parse
    duplicates: int = (
        0  # of `records`, dropped from the table: the same record read already (table.DEDUP_KEY)
    )
    conflicts: int = 0  # of `records`, kept although an earlier row has its host, channel, record id and
    # time but other content (a tampered or corrupt copy): both rows stay in the table
    chunks: int = 0  # chunks found in the file (every chunk, not only the header's count)
    chunks_failed: int = 0  # chunks that could not be read at all (bad magic mid-file, truncated...)
    chunks_skipped: int = 0  # chunks not parsed because no rule can match them (selective parsing)
    recovered: int = 0  # records one backend missed and the other recovered
    holes: list[tuple[datetime | None, datetime | None]] = field(default_factory=list)  # time spans
    # where records of this file were lost (None: open on that side): the log cannot vouch for them
    records_undecoded: int = 0  # of `records`, counted from their record headers only: no rule can
    # match them (selective parsing), so their BinXML was never decoded
    undecoded_span: tuple[int, int] | None = None  # FILETIME ticks of the first and last of those
    source_tz: str = ""  # the zone this export's local times were read in (--source-tz); '' when they
    # carried their own zone or offset
    warnings: list[str] = field(default_factory=list)

    @property
    def chunks_decoded(self) -> int:
        """Chunks whose records were (at least partly) decoded: the ones not skipped."""
        return self.chunks - self.chunks_skipped

    def warn(self, text: str) -> None:
        if text not in self.warnings:
            self.warnings.append(text)

    def degrade(self, reason: str) -> None:
        """Mark the file partial (unless skipped) and keep the first reason."""
        if self.status == "ok":
            self.status = "partial"
        if not self.reason:
            self.reason = reason

    def skip(self, reason: str) -> None:
        self.status = "skipped"
        self.reason = reason

    def as_dict(self) -> dict[str, object]:
        out = asdict(self)
        out.pop("undecoded_span")  # internal: coverage of the undecoded records (diagnose/coverage.py)
        out["host"] = ", ".join(self.hosts)  # the JSON contract's single 'host' key
        return out


@dataclass
class Ledger:
    """All input entries of one analysis, in discovery order, plus run-level warnings."""

    entries: list[InputEntry] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    _paths: set[str] = field(default_factory=set, repr=False)  # display paths in use
    _copies: dict[str, int] = field(default_factory=dict, repr=False)  # path -> last ' #N' given to it

    def add(self, path: str, **fields: object) -> InputEntry:
        """A new entry; a display path already taken (a zip with two members of one name) gets ' #2'...
        (counting on from the last number given, so many members of one name stay linear)."""
        unique, copy = path, self._copies.get(path, 1)
        while unique in self._paths:
            copy += 1
            unique = f"{path} #{copy}"
        self._copies[path] = copy
        self._paths.add(unique)
        entry = InputEntry(path=unique, id=len(self.entries), **fields)  # type: ignore[arg-type]
        self.entries.append(entry)
        return entry

    def get(self, entry_id: int) -> InputEntry:
        """The entry with this id (InputEntry.id, Source.entry_id, the table's input_id column)."""
        return self.entries[entry_id]

    def warn(self, text: str) -> None:
        if text not in self.warnings:
            self.warnings.append(text)

    def totals(self) -> dict[str, int]:
        keys = (
            "records",
            "records_failed",
            "duplicates",
            "conflicts",
            "chunks",
            "chunks_failed",
            "chunks_skipped",
            "records_undecoded",
        )
        totals = {k: sum(getattr(e, k) for e in self.entries) for k in keys}
        totals["records_unique"] = totals["records"] - totals["duplicates"]  # distinct records read
        totals["files"] = len(self.entries)
        totals["files_skipped"] = sum(e.status == "skipped" for e in self.entries)
        totals["files_partial"] = sum(e.status == "partial" for e in self.entries)
        return totals
