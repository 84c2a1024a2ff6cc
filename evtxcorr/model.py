"""What crosses stage boundaries: the record shape, the event-table columns, incidents and findings.

Flow: discover -> parse (dict records, RECORD_FIELDS) -> table (DataFrame, COLUMNS) -> correlate
(Incident) -> diagnose (Finding) -> render. A stage imports this module, errors and ledger, never a
later stage.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

# One parsed record, as every parse backend yields it: a plain dict with exactly these keys.
# Values are normalised so that both backends give equal dicts for the same record.
RECORD_FIELDS: dict[str, str] = {
    "time": "aware UTC datetime of System/TimeCreated/@SystemTime (microsecond precision)",
    "host": "System/Computer as written",
    "channel": "System/Channel ('' when absent)",
    "provider": "System/Provider/@Name",
    "event_id": "System/EventID as int (without qualifiers)",
    "qualifiers": "System/EventID/@Qualifiers as int, or None",
    "level": "System/Level as int, or None",
    "task": "System/Task as int, or None",
    "opcode": "System/Opcode as int, or None",
    "version": "System/Version as int, or None",
    "keywords": "System/Keywords as lower-case hex without padding ('0x80000000000000'), or ''",
    "record_id": "System/EventRecordID as int",
    "process_id": "System/Execution/@ProcessID as int, or None",
    "thread_id": "System/Execution/@ThreadID as int, or None",
    "user": "System/Security/@UserID ('' when absent)",
    "activity_id": "System/Correlation/@ActivityID, upper-case with braces, or ''",
    "data": "tuple of payload values as text, in stored order: EventData/Data (classic string arrays "
    "expanded one per string) or the UserData root's child elements",
    "data_names": "tuple, same length as data: each value's Name attribute or element name ('' if unnamed)",
    "binary": "EventData/Binary as upper-case hex ('' when absent or empty)",
    "file": "display path of the input file (zip members as 'bundle.zip!dir/System.evtx')",
    "input_id": "ledger id of the input file (InputEntry.id): unique where display paths repeat",
    "chunk": "chunk index in the file (0-based, counted from the first chunk after the file header); "
    "for an export, the record's index in the file (0-based)",
    "offset": "byte offset of the record in the file; for an export, the line the record starts on (1-based)",
    "parser": "reader that produced the record: 'evtx' or 'python-evtx' (.evtx), 'xml-export', "
    "'csv-export', 'json-export'",
}

# Fields an export reader (parse/exports/: XML, CSV, JSON exports) sets on its records, with the value
# every .evtx record has; the table fills the default in where a record leaves a field out.
EXPORT_FIELDS: dict[str, tuple[object, str]] = {
    "payload_known": (
        True,
        "False when the input carries no payload values (Event Viewer CSV, PowerShell Export-Csv, "
        "ConvertTo-Json at its default depth): `data`/`binary` are empty, so a detection on payload "
        "positions can neither match nor be ruled out on this row (unknown, not absent)",
    ),
    "time_unit_us": (
        1,
        "resolution of `time` in the input, in microseconds: 1 (.evtx, XML), 1000 (ConvertTo-Json "
        "'/Date(ms)/'), 1000000 (CSV, to the second); an export row matches its .evtx twin at this precision",
    ),
    "rendered_message": ("", "message text as the exporting Windows rendered it (RenderingInfo, CSV), or ''"),
    "rendered_level": ("", "level name as rendered by Windows ('Error', 'エラー'), or ''"),
    "rendered_task": ("", "task category as rendered by Windows, or ''"),
    "rendered_culture": ("", "RenderingInfo/@Culture ('ja-JP') of the rendered texts, or '' when not said"),
}
# Export rows leave out what their format lacks: `record_id` 0 (Event Viewer CSV has none; no real log
# uses 0), `host` / `channel` '' when neither the file nor its name says (then unknown, never matched).

# The event table adds these derived columns to RECORD_FIELDS (table.py computes them).
DERIVED_COLUMNS: dict[str, str] = {
    "host_key": "lower-case short host name (Computer up to the first dot): joins hosts across logs",
    "codes": "tuple of status codes found in the record, canonical upper-case hex '0xC000005E'",
}

COLUMNS: tuple[str, ...] = tuple(RECORD_FIELDS) + tuple(EXPORT_FIELDS) + tuple(DERIVED_COLUMNS)

ROLES = ("required", "supporting", "refuting")


@dataclass(frozen=True)
class Source:
    """One input file to parse: where the bytes are now, and how to name it in a report."""

    path: Path  # a readable local file (zip members are extracted to a work dir first)
    display: str  # what reports call it: 'bundle.zip!HV01/System.evtx'
    kind: str  # 'evtx', or an export: 'xml', 'csv', 'json' (all recognised by content)
    host_hint: str | None = None  # host named by the file name (TSS / PrivateCloud layouts), if any
    channel_hint: str | None = None  # channel named by the file name, if any
    entry_id: int = -1  # its ledger entry (Ledger.get); -1 when made outside discover()

    def size(self) -> int:
        """The file's size in bytes (0 when it cannot be read)."""
        try:
            return self.path.stat().st_size
        except OSError:
            return 0


@dataclass(frozen=True)
class Incident:
    """Events chained together in time, across hosts. `rows` index the event table."""

    id: str
    start: datetime
    end: datetime
    hosts: tuple[str, ...]
    rows: tuple[int, ...]
    anchor_rows: tuple[int, ...]  # the rows that opened/extended the incident (the errors)
    cluster: str | None = None  # Cluster.name when the inputs held several clusters


@dataclass(frozen=True)
class Evidence:
    """One piece of evidence a cause asked for, and what it contributed to the confidence.

    status: 'present' (rows cite it), 'absent' (looked for and not there), 'unknown' (the logs that
    could show it are missing from the bundle).
    """

    role: str  # one of ROLES
    key: str  # the evidence id in the cause file
    detection: str  # the detection (rule) id it looks for
    status: str
    contribution: float
    rows: tuple[int, ...] = ()
    note_key: str | None = None  # message key explaining the status, if any
    # What the item could contribute once the missing logs are known (unknown hosts taken against the
    # cause, then for it); equal to (contribution, contribution) when every host in scope decided it.
    contribution_range: tuple[float, float] | None = None
    unknown_logs: tuple[tuple[str, str], ...] = ()  # (host key, channel) whose log could not decide it
    # hosts whose matching events came from an export without payload: the event is there, but whether
    # it is the one the detection describes (its status code, its reason) could not be checked
    unchecked_hosts: tuple[str, ...] = ()


@dataclass(frozen=True)
class Finding:
    """A cause named for an incident on a host, with its confidence and the evidence behind it.

    A cluster-scoped cause gives one finding per incident: `host` None, `hosts` the nodes that showed
    it. `kind` is 'cause' (a problem to fix) or 'benign' (expected, nothing to do). `skew_seconds`:
    the estimated clock offset (seconds) of each host the finding cites, where one was measured.
    """

    cause: str
    incident: str
    host: str | None
    confidence: float
    evidence: tuple[Evidence, ...]
    skew_seconds: dict[str, float] = field(default_factory=dict)
    # [low, high]: the confidence with every undecided item counted against the cause, then for it.
    confidence_range: tuple[float, float] | None = None
    # 'confirmed' (low >= threshold), 'unconfirmed' (only the missing logs stand between it and a
    # lower verdict), '' (not judged, e.g. a rejected finding)
    certainty: str = ""
    onset: datetime | None = None  # the first anchor of the episode the finding explains
    last: datetime | None = None  # its last anchor
    cluster: str | None = None  # Cluster.name when the inputs held several clusters
    hosts: tuple[str, ...] = ()
    kind: str = "cause"


@dataclass(frozen=True)
class Cluster:
    """One failover cluster found in the inputs: its hosts with logs, and the nodes it should have.

    Host keys are short lower-case names, unique within a cluster. `nodes` is what the logs say about
    the membership (hosts with logs, nodes named in cluster events, `--nodes`); `missing` the nodes
    whose logs were not collected: they are *unknown* for every evidence item they could decide.
    """

    name: str
    domain: str  # DNS suffix of Computer ('contoso.local'), '' when the logs write short names
    hosts: tuple[str, ...]  # host keys with logs in the inputs
    nodes: tuple[str, ...]  # every node expected, host keys
    named: tuple[str, ...] = ()  # nodes named in cluster events
    declared: tuple[str, ...] = ()  # nodes given with --nodes
    names: dict[str, str] = field(default_factory=dict)  # host key -> name as logged (or as named)
    basis: str = "single"  # 'single' | 'domain' | 'cluster-events': how it was told from the others

    @property
    def missing(self) -> tuple[str, ...]:
        return tuple(node for node in self.nodes if node not in self.hosts)


@dataclass(frozen=True)
class ClockOffset:
    """One node's clock against the reference node's, estimated from events several nodes log for the
    same moment: logged time minus reference time is `offset_s`, give or take `uncertainty_s`."""

    host: str  # host key
    offset_s: float
    uncertainty_s: float
    reference: str  # host key of the node the offsets are measured against
    observations: int  # how many pairs of events the estimate rests on
    basis: tuple[str, ...] = ()  # names of the event pairings used (settings `clock.moments`)


@dataclass(frozen=True)
class CauseText:
    """The words of a cause, from its rule file, by language ('en', 'ja').

    `summary` may use {host}, {incident}, {start}, {confidence}; `evidence` maps an evidence key to
    its description. `verify` holds commands (language-neutral).
    """

    title: dict[str, str]
    summary: dict[str, str]
    explanation: dict[str, str]
    remedy: dict[str, str]
    cannot_show: dict[str, tuple[str, ...]]
    evidence: dict[str, dict[str, str]]
    verify: tuple[str, ...] = ()
    references: tuple[str, ...] = ()
    scope: str = "host"  # 'host' or 'cluster'
    kind: str = "cause"  # 'cause' or 'benign'


@dataclass
class Report:
    """Everything one analysis produced; render/ turns it into HTML, Markdown and JSON.

    `frame` is the event table (pandas DataFrame, COLUMNS); incidents and evidence cite its rows.
    `rejected` holds causes that were considered for an incident and scored below the reporting
    threshold, so the report can say what was ruled out and why.
    """

    version: str
    generated: datetime
    options: dict[str, object]
    ledger: object  # ledger.Ledger (typed loosely to keep model free of imports)
    frame: object  # pandas.DataFrame
    incidents: list[Incident]
    findings: list[Finding]
    rejected: list[Finding]
    causes: dict[str, CauseText]
    signals: dict[int, tuple[str, ...]] = field(default_factory=dict)  # row -> detection ids it matched
    # row -> detection ids it may match: an export without payload (Event Viewer CSV) shows the provider
    # and event id, not the status code or reason the detection also asks for
    maybe: dict[int, tuple[str, ...]] = field(default_factory=dict)
    detections: dict[str, dict[str, str]] = field(default_factory=dict)  # detection id -> lang -> title
    clusters: list[Cluster] = field(default_factory=list)  # one per cluster found in the inputs
    clock: list[ClockOffset] = field(default_factory=list)  # measured node clock offsets
