"""Report -> plain dict: the JSON contract, plus a 'view' part only the templates read. No Jinja here.

Everything in the dict is plain text, numbers, lists and dicts. Text is left as found (event data is
attacker-controlled); the templates escape it. Times are UTC ISO-8601 strings ending in 'Z'; the
templates convert them to the display zone.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import PurePath
from typing import Any

from evtxcorr.ledger import InputEntry, Ledger
from evtxcorr.model import COLUMNS, CauseText, Cluster, Evidence, Finding, Incident, Report
from evtxcorr.render import timeline
from evtxcorr.render.messages import check_lang, describe_code, event_message, messages
from evtxcorr.table import host_names

# Top-level keys of the JSON report, in order (keys may be added, never renamed).
JSON_KEYS = (
    "tool",
    "version",
    "generated",
    "lang",
    "display_timezone",
    "options",
    "totals",
    "inputs",
    "warnings",
    "incidents",
    "findings",
    "rejected",
    "no_finding",
    "clusters",
    "benign",
    "unexplained",
    "clock",
)
# The contract's input keys come first; the ledger's other fields follow.
INPUT_KEYS = ("path", "format", "host", "records", "records_failed", "status", "reason")
# Incident timelines in HTML list at most this many events per incident; JSON lists all.
HTML_EVENTS_PER_INCIDENT = 400
_SUMMARY_FIELD = re.compile(r"\{(host|hosts|incident|start|confidence)\}")


def plain(value: Any) -> Any:
    """JSON-safe copy: datetimes to UTC ISO, tuples to lists, numpy/pandas scalars to Python, NA to None."""
    kind = type(value)
    if value is None or kind is str or kind is int or kind is bool:
        return value
    if kind is float:
        return None if value != value else value
    if kind.__name__ in ("NAType", "NaTType"):
        return None
    if isinstance(value, datetime):
        return timeline.iso_utc(value)
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value, key=str) if isinstance(value, set | frozenset) else value
        return [plain(v) for v in items]
    if isinstance(value, PurePath):
        return str(value)
    if hasattr(value, "item"):  # numpy scalar
        return plain(value.item())
    for base in (str, int, float):  # subclasses (enums, numpy strings) as the plain type
        if isinstance(value, base):
            return plain(base(value))
    return str(value)


def _as_int(value: Any) -> int | None:
    value = plain(value)
    return int(value) if isinstance(value, int | float) else None


@dataclass
class _Book:
    """Shared state while building: event dicts by row, who cites each row, and warnings."""

    report: Report
    lang: str
    warnings: list[str]
    cited: dict[int, list[dict[str, str]]] = field(default_factory=dict)
    events: dict[int, dict[str, Any]] = field(default_factory=dict)
    host_names: dict[str, str] | None = None  # host key -> name as logged, built on first use

    def warn(self, text: str) -> None:
        if text not in self.warnings:
            self.warnings.append(text)

    def load(self, rows: Iterable[int]) -> None:
        """Build the EVENT dicts of `rows` (one frame lookup for all of them)."""
        frame = self.report.frame
        wanted = sorted({int(r) for r in rows} - set(self.events))
        present = [r for r in wanted if r in frame.index]  # type: ignore[attr-defined]
        for row in sorted(set(wanted) - set(present)):
            self.warn(messages(self.lang)["warn_missing_row"].format(row=row))
        if not present:
            return
        table = frame.loc[present]  # type: ignore[attr-defined]
        for row, values in zip(table.index, table.to_dict("records"), strict=True):
            self.events[int(row)] = self._event(int(row), values)

    def host_name(self, key: str, cluster: str | None = None) -> str:
        """The host as its logs write it ('HV01.contoso.local') for a host key ('hv01'); within a
        cluster when the inputs held several (their short names may collide)."""
        for found in self.report.clusters:
            if cluster is not None and found.name == cluster and key in found.names:
                return found.names[key]
        if self.host_names is None:
            self.host_names = host_names(self.report.frame)  # type: ignore[arg-type]
        if key not in self.host_names:
            named = {k: v for c in self.report.clusters for k, v in c.names.items()}
            return named.get(key, key)
        return self.host_names[key]

    def detection_title(self, name: str) -> str:
        """A detection's title in the report language (English, then the name, when it has none)."""
        titles = self.report.detections.get(name, {})
        return titles.get(self.lang) or titles.get("en") or name

    def event(self, row: int) -> dict[str, Any] | None:
        self.load([row])
        return self.events.get(int(row))

    def _event(self, row: int, values: Mapping[str, Any]) -> dict[str, Any]:
        words = messages(self.lang)
        out: dict[str, Any] = {"row": row}
        for column in COLUMNS:
            out[column] = plain(values.get(column))
        data = [("" if v is None else str(v)) for v in out.get("data") or []]
        out["data"] = data
        out["data_names"] = [("" if v is None else str(v)) for v in out.get("data_names") or []]
        level = _as_int(out.get("level"))
        out["level_name"] = words.get(f"level_{level}", "" if level is None else str(level))
        out["codes"] = [_code(str(code), self.lang) for code in out.get("codes") or []]
        event_id = _as_int(out.get("event_id"))
        out["message"] = (
            event_message(str(out.get("provider") or ""), event_id, data, self.lang)
            if event_id is not None
            else None
        )
        out["detections"] = [
            {"id": det, "title": self.detection_title(det)} for det in self.report.signals.get(row, ())
        ] + [
            {"id": det, "title": words["detection_possible"].format(title=self.detection_title(det))}
            for det in self.report.maybe.get(row, ())
        ]
        out["cited"] = self.cited.get(row, [])
        return out


def _code(code: str, lang: str) -> dict[str, str | None]:
    found = describe_code(code, lang)
    return {"code": code, "name": found[0] if found else None, "text": found[1] if found else None}


def _lang_text(texts: Mapping[str, Any], lang: str, what: str, book: _Book) -> Any:
    """`texts[lang]`, or the English text with a warning saying so."""
    if lang in texts:
        return texts[lang]
    if "en" in texts:
        book.warn(messages(book.lang)["warn_no_translation"].format(what=what, lang=lang))
        return texts["en"]
    return None


def _evidence_text(cause: CauseText | None, evidence: Evidence, lang: str, book: _Book) -> str:
    """Description of an evidence key; cause files map key -> {lang: text}."""
    if cause is not None:
        by_lang = cause.evidence.get(evidence.key)
        if isinstance(by_lang, Mapping):
            text = _lang_text(by_lang, lang, f"evidence '{evidence.key}'", book)
            if text:
                return str(text)
    return book.detection_title(evidence.detection) if evidence.detection else evidence.key


def _record_ref(event: Mapping[str, Any]) -> dict[str, Any]:
    keys = ("provider", "event_id", "time", "host", "file", "record_id", "channel", "chunk", "offset", "row")
    return {key: event.get(key) for key in keys}


def _reasons(finding: Finding, cause: CauseText | None, book: _Book) -> list[dict[str, Any]]:
    words = messages(book.lang)
    reasons = []
    explained = {row for ev in finding.evidence if not ev.key.startswith("anchor:") for row in ev.rows}
    for evidence in finding.evidence:
        if evidence.key.startswith("anchor:") and set(evidence.rows) <= explained:
            continue  # the same records are shown, with the cause's own words, by another item
        note = None
        if evidence.note_key:
            note = words.get(evidence.note_key)
            if note is None:
                book.warn(words["warn_unknown_note"].format(key=evidence.note_key))
                note = evidence.note_key
        book.load(evidence.rows)
        reasons.append(
            {
                "key": evidence.key,
                "role": evidence.role,
                "status": evidence.status,
                "contribution": _finite(evidence.contribution),
                "description": _evidence_text(cause, evidence, book.lang, book),
                "detection": evidence.detection,
                "detection_title": book.detection_title(evidence.detection),
                "note": note,
                "contribution_range": [_finite(v) for v in evidence.contribution_range]
                if evidence.contribution_range
                else [_finite(evidence.contribution)] * 2,
                "unknown_logs": [
                    {"host": book.host_name(h, finding.cluster), "channel": c}
                    for h, c in evidence.unknown_logs
                ],
                "unchecked_hosts": [book.host_name(h, finding.cluster) for h in evidence.unchecked_hosts],
                "records": [_record_ref(ev) for ev in map(book.event, evidence.rows) if ev],
            }
        )
    return reasons


def _against(reason: Mapping[str, Any]) -> bool:
    """Did this evidence count against the cause? (It lowered the score, or a required item is unknown.)"""
    return (reason["contribution"] or 0) < 0 or (
        reason["role"] == "required" and reason["status"] == "unknown"
    )


def _finite(value: float) -> float | None:
    number = float(value)
    return round(number, 4) if math.isfinite(number) else None


def _range(finding: Finding) -> list[float | None]:
    low, high = finding.confidence_range or (finding.confidence, finding.confidence)
    return [_finite(low), _finite(high)]


def _missing_logs(finding: Finding, book: _Book) -> list[dict[str, str]]:
    """The logs whose absence leaves the low end of the range below the confidence, by host and channel."""
    seen: dict[tuple[str, str], dict[str, str]] = {}
    for item in finding.evidence:
        low = item.contribution_range[0] if item.contribution_range else item.contribution
        if low >= item.contribution:
            continue  # its unknowns could only raise the confidence
        for host, channel in item.unknown_logs:
            seen.setdefault(
                (host, channel), {"host": book.host_name(host, finding.cluster), "channel": channel or "?"}
            )
    return [seen[key] for key in sorted(seen)]


def _certainty_text(finding: Finding, logs: list[dict[str, str]], book: _Book) -> str | None:
    """How sure the verdict is, in words: an unconfirmed finding says which logs could overturn it, or
    which evidence an export without payload left unchecked."""
    words = messages(book.lang)
    low, high = _range(finding)
    if finding.certainty != "unconfirmed":
        return None
    bounds = {"low": round((low or 0) * 100), "high": round((high or 0) * 100)}
    unchecked = [item for item in finding.evidence if item.unchecked_hosts]
    if unchecked and not logs:
        named = words["list_sep"].join(dict.fromkeys(book.detection_title(i.detection) for i in unchecked))
        return words["certainty_unchecked"].format(items=named, **bounds)
    named = (
        words["list_sep"].join(words["log_of_host"].format(**log) for log in logs) or words["logs_unknown"]
    )
    return words["certainty_unconfirmed"].format(logs=named, **bounds)


def _summary(template: str, finding: Finding, start: str | None, host: str, hosts: str) -> str:
    values = {
        "host": host,
        "hosts": hosts,
        "incident": finding.incident,
        "start": (start[:19].replace("T", " ") + " UTC") if start else "",
        "confidence": f"{round(finding.confidence * 100)}%",
    }
    return _SUMMARY_FIELD.sub(lambda m: values[m.group(1)], template)


def _decisive(reasons: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(what decided the verdict, what was only checked): required items and those that moved the
    score first, largest first; checked-and-absent items worth nothing go to one 'also checked' line."""

    def quiet(r: Mapping[str, Any]) -> bool:
        return (
            (r["contribution"] or 0) == 0
            and r["role"] != "required"
            and r["status"] == "absent"
            and not r["note"]
        )

    shown = [r for r in reasons if not quiet(r)]
    shown.sort(key=lambda r: (r["role"] != "required", -abs(r["contribution"] or 0)))  # stable otherwise
    return shown, [r for r in reasons if quiet(r)]


def _finding(finding: Finding, book: _Book, starts: Mapping[str, str]) -> dict[str, Any]:
    cause = book.report.causes.get(finding.cause)
    lang = book.lang
    if cause is None:
        book.warn(messages(lang)["warn_unknown_cause"].format(cause=finding.cause))

    def text(name: str) -> Any:
        return _lang_text(getattr(cause, name), lang, f"{finding.cause} {name}", book) if cause else None

    evidence = [
        {"role": ev.role, **_record_ref(event), "key": ev.key}
        for ev in finding.evidence
        for event in map(book.event, ev.rows)
        if event
    ]
    reasons = _reasons(finding, cause, book)
    logs = _missing_logs(finding, book)
    keys = finding.hosts or ((finding.host,) if finding.host else ())
    hosts = [book.host_name(key, finding.cluster) for key in keys]
    host = book.host_name(finding.host, finding.cluster) if finding.host else None
    shown = host or ", ".join(hosts)
    decisive, also_checked = _decisive(reasons)
    return {
        "cause": finding.cause,
        "incident": finding.incident,
        "host": host,
        "confidence": _finite(finding.confidence),
        "summary": _summary(
            str(text("summary") or ""), finding, starts.get(finding.incident), shown, ", ".join(hosts)
        ),
        "evidence": evidence,
        "remedy": str(text("remedy") or ""),
        "verify": list(cause.verify) if cause else [],
        "title": str(text("title") or finding.cause),
        "explanation": str(text("explanation") or ""),
        "reasons": reasons,
        "why_against": [r for r in reasons if _against(r)],
        "cannot_show": [str(t) for t in (text("cannot_show") or ())],
        "references": list(cause.references) if cause else [],
        "skew": {host: round(float(s), 3) for host, s in finding.skew_seconds.items()},
        "host_key": finding.host,
        "confidence_range": _range(finding),
        "certainty": finding.certainty or None,
        "certainty_text": _certainty_text(finding, logs, book),
        "missing_logs": logs,
        "onset": timeline.iso_utc(finding.onset) if finding.onset else None,
        "last": timeline.iso_utc(finding.last) if finding.last else None,
        "cluster": finding.cluster,
        "hosts": hosts,
        "kind": finding.kind,
        "scope": cause.scope if cause else "host",
        "shown_host": shown,
        "decisive": decisive,
        "also_checked": also_checked,
    }


def _incident(incident: Incident, book: _Book) -> dict[str, Any]:
    book.load(incident.rows)
    events = [book.events[r] for r in incident.rows if r in book.events]
    events.sort(key=lambda ev: (ev["time"] or "", ev["row"]))
    anchors = set(incident.anchor_rows)
    return {
        "id": incident.id,
        "start": timeline.iso_utc(incident.start),
        "end": timeline.iso_utc(incident.end),
        "hosts": [book.host_name(key, incident.cluster) for key in incident.hosts],
        "host_keys": list(incident.hosts),
        "cluster": incident.cluster,
        "events": [{**ev, "anchor": ev["row"] in anchors} for ev in events],
    }


def _input(entry: InputEntry) -> dict[str, Any]:
    fields = plain(entry.as_dict())
    return {**{key: fields[key] for key in INPUT_KEYS}, **fields}


def _cite(findings: Sequence[Finding], rejected: bool, book: _Book) -> None:
    for finding in findings:
        for evidence in finding.evidence:
            for row in evidence.rows:
                book.cited.setdefault(int(row), []).append(
                    {
                        "cause": finding.cause,
                        "key": evidence.key,
                        "role": evidence.role,
                        "host": book.host_name(finding.host, finding.cluster) if finding.host else "",
                        "rejected": rejected,
                    }
                )


def _cluster(cluster: Cluster) -> dict[str, Any]:
    """A cluster's expected and collected nodes (names as logged, or as the cluster events write them)."""

    def names(keys: Iterable[str]) -> list[str]:
        return [cluster.names.get(key, key) for key in keys]

    return {
        "name": cluster.name,
        "domain": cluster.domain,
        "basis": cluster.basis,
        "nodes": names(cluster.nodes),
        "collected": names(cluster.hosts),
        "missing": names(cluster.missing),
        "named_in_events": names(cluster.named),
        "declared": names(cluster.declared),
    }


def _verdicts(findings: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Findings of one cause in one incident, shown once: the most confident one in full, the other
    hosts listed with theirs (a cluster-wide outage is found on every node; JSON keeps them all)."""
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for finding in findings:
        groups.setdefault((finding["cause"], finding["incident"]), []).append(finding)
    verdicts = []
    for members in groups.values():
        best = max(members, key=lambda f: f["confidence"] or 0.0)
        others = [{"host": f["shown_host"], "confidence": f["confidence"]} for f in members if f is not best]
        verdicts.append({"finding": best, "others": others})
    return verdicts


def _benign_groups(benign: Sequence[Mapping[str, Any]], words: Mapping[str, str]) -> list[dict[str, Any]]:
    """Benign findings by cause, one short line each: '14 incidents explained as ...; nothing to do'."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for finding in benign:
        groups.setdefault(finding["cause"], []).append(finding)
    out = []
    for cause, members in groups.items():
        incidents = list(dict.fromkeys(f["incident"] for f in members))
        out.append(
            {
                "cause": cause,
                "title": members[0]["title"],
                "line": words["benign_line"].format(count=len(incidents), title=members[0]["title"]),
                "members": [
                    {"incident": f["incident"], "host": f["shown_host"], "confidence": f["confidence"]}
                    for f in members
                ],
            }
        )
    return out


def _clock(report: Report, book: _Book) -> list[dict[str, Any]]:
    return [
        {
            "host": book.host_name(c.host),
            "host_key": c.host,
            "offset_s": c.offset_s,
            "uncertainty_s": c.uncertainty_s,
            "reference": book.host_name(c.reference),
            "observations": c.observations,
            "basis": list(c.basis),
        }
        for c in report.clock
    ]


def _view(ctx: Mapping[str, Any], book: _Book, tz: str) -> dict[str, Any]:
    """What only the HTML/Markdown templates need: zone, timelines, the evidence table."""
    cited_rows = sorted(
        book.cited, key=lambda r: (book.events[r]["time"] or "", r) if r in book.events else ("", r)
    )
    moments = [timeline.parse_iso(ctx["generated"])]
    moments += [timeline.parse_iso(ev["time"]) for ev in book.events.values() if ev.get("time")]
    offsets = {c["host_key"]: c["offset_s"] for c in ctx["clock"]}
    return {
        "verdicts": _verdicts(ctx["findings"]),
        "benign_groups": _benign_groups(ctx["benign"], messages(book.lang)),
        "zone": {"name": tz, "offsets": timeline.zone_offsets(moments, tz)},
        "timelines": {
            inc["id"]: timeline.build(inc["events"], inc["start"], inc["end"], inc["hosts"], tz, offsets)
            for inc in ctx["incidents"]
        },
        "incident_events": {inc["id"]: inc["events"][:HTML_EVENTS_PER_INCIDENT] for inc in ctx["incidents"]},
        "evidence_rows": [book.events[r] for r in cited_rows if r in book.events],
        "input_warnings": [
            {"path": entry["path"], "text": text} for entry in ctx["inputs"] for text in entry["warnings"]
        ],
    }


def build_context(report: Report, *, lang: str = "en", tz: str = "UTC") -> dict[str, Any]:
    """The JSON contract (JSON_KEYS) plus 'view' for the templates; see the module docstring."""
    check_lang(lang)
    timeline.zone(tz)
    ledger: Ledger = report.ledger  # type: ignore[assignment]
    words = messages(lang)
    book = _Book(report=report, lang=lang, warnings=list(ledger.warnings))
    _cite(report.findings, False, book)
    _cite(report.rejected, True, book)
    incidents = [_incident(incident, book) for incident in report.incidents]
    starts = {inc["id"]: inc["start"] for inc in incidents}
    every = [_finding(f, book, starts) for f in report.findings]
    findings = [f for f in every if f["kind"] != "benign"]
    benign = [f for f in every if f["kind"] == "benign"]
    rejected = [_finding(f, book, starts) for f in report.rejected]
    explained = {f["incident"] for f in every}
    book.load(book.cited)
    ctx: dict[str, Any] = {
        "tool": "evtxcorr",
        "version": report.version,
        "generated": timeline.iso_utc(report.generated),
        "lang": lang,
        "display_timezone": tz,
        "options": plain(report.options),
        "totals": ledger.totals(),
        "inputs": [_input(entry) for entry in ledger.entries],
        "warnings": book.warnings,
        "clusters": [_cluster(cluster) for cluster in report.clusters],
        "incidents": incidents,
        "findings": findings,
        "rejected": rejected,
        "no_finding": None if findings else words["no_finding"].format(incidents=len(incidents)),
        "benign": benign,
        "unexplained": [inc["id"] for inc in incidents if inc["id"] not in explained],
        "clock": _clock(report, book),
    }
    ctx["view"] = _view(ctx, book, tz)
    ctx["view"]["several_clusters"] = (
        words["clusters_several"].format(
            count=len(report.clusters), names=words["list_sep"].join(c.name for c in report.clusters)
        )
        if len(report.clusters) > 1
        else None
    )
    return ctx


def json_part(ctx: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON report: the context without the template-only 'view'."""
    return {key: ctx[key] for key in JSON_KEYS}
