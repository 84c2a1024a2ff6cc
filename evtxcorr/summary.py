"""What the CLI prints on stderr after a run: counts, findings, every input not fully analysed and
why, warnings; and the one-line reason when nothing in the inputs was usable. Plain strings, made
safe for a terminal (terminal.safe); the CLI only prints them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from evtxcorr.discover.sniff import EXPORT_KINDS
from evtxcorr.ledger import InputEntry, Ledger
from evtxcorr.model import Finding, Report
from evtxcorr.table import host_names
from evtxcorr.terminal import safe

MAX_LISTED = 10  # inputs named one by one in the summary; the report lists them all
GROUP_FROM = 3  # this many inputs skipped for one reason are summed up in one line


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def _reason_key(entry: InputEntry) -> str:
    """The reason with what differs per file left out, so that like skips group together."""
    if entry.reason.startswith("text export of "):
        return "text export copies of the .evtx beside them (the .evtx are analysed)"
    return entry.reason


def _input_lines(entries: Sequence[InputEntry], status: str) -> list[str]:
    groups: dict[str, list[InputEntry]] = {}
    for entry in entries:
        if entry.status == status:
            groups.setdefault(_reason_key(entry), []).append(entry)
    lines: list[str] = []
    singles: list[InputEntry] = []
    for reason, members in groups.items():
        if len(members) >= GROUP_FROM:
            lines.append(f"  {status}: {len(members)} files: {safe(reason)} (e.g. {safe(members[0].path)})")
        else:
            singles += members
    for entry in singles[:MAX_LISTED]:
        lines.append(f"  {status}: {safe(entry.path)}: {safe(entry.reason or 'no reason recorded')}")
    if len(singles) > MAX_LISTED:
        lines.append(f"  {status}: {len(singles) - MAX_LISTED} more, listed in the report")
    return lines


def _why_unconfirmed(finding: Finding) -> str:
    """What keeps the low end of a finding's range under the threshold, in a few words."""
    if any(item.unknown_logs for item in finding.evidence) or not any(
        item.unchecked_hosts for item in finding.evidence
    ):
        return "logs are missing"
    return "the exports carry no payload to check"


def summary_lines(report: Report, written: Sequence[Path]) -> list[str]:
    ledger: Ledger = report.ledger  # type: ignore[assignment]
    totals = ledger.totals()
    names = host_names(report.frame)
    states = [
        f"{totals[key]} {word}"
        for key, word in (("files_skipped", "skipped"), ("files_partial", "partial"))
        if totals[key]
    ]
    conflicts = f", {totals['conflicts']} conflicting copies" if totals["conflicts"] else ""
    state = f" ({', '.join(states)})" if states else ""
    lines = [
        f"evtxcorr: {_plural(totals['files'], 'file')}{state}, "
        f"{totals['records_unique']} records ({totals['records_failed']} failed, "
        f"{totals['duplicates']} duplicates{conflicts}), {_plural(len(report.incidents), 'incident')}"
    ]
    causes = [f for f in report.findings if f.kind != "benign"]
    in_cluster = {c.name: c.names for c in report.clusters}

    def name(key: str, cluster: str | None) -> str:
        """The host as its own cluster's logs write it: short names of two domains may collide."""
        return safe(in_cluster.get(cluster or "", {}).get(key) or names.get(key, key))

    for finding in causes:
        where = (
            name(finding.host, finding.cluster)
            if finding.host
            else "the cluster (" + ", ".join(name(h, finding.cluster) for h in finding.hosts) + ")"
        )
        low, high = finding.confidence_range or (finding.confidence, finding.confidence)
        span = f" (range {low:.2f}-{high:.2f})" if low != high else ""
        unconfirmed = (
            f", unconfirmed: {_why_unconfirmed(finding)}" if finding.certainty == "unconfirmed" else ""
        )
        lines.append(
            f"  finding: {safe(finding.cause)} on {where} ({safe(finding.incident)}), "
            f"confidence {finding.confidence:.2f}{span}{unconfirmed}"
        )
    explained: dict[str, set[str]] = {}
    for finding in report.findings:
        if finding.kind == "benign":
            explained.setdefault(finding.cause, set()).add(finding.incident)
    for cause, incidents in explained.items():
        lines.append(
            f"  explained: {_plural(len(incidents), 'incident')} as {safe(cause)} (expected, nothing to do)"
        )
    for cluster in report.clusters:
        if cluster.missing:
            missing = ", ".join(safe(cluster.names.get(n, n)) for n in cluster.missing)
            where = f" in {safe(cluster.name)}" if len(report.clusters) > 1 else ""
            lines.append(f"  nodes without logs{where}: {missing}")
    if len(report.clusters) > 1:
        lines.append(
            f"  {len(report.clusters)} clusters in these inputs, each analysed on its own: "
            f"{'; '.join(safe(c.name) for c in report.clusters)} (separate cases? try `evtxcorr batch`)"
        )
    if not causes:
        lines.append("  no cause found")
    lines += _input_lines(ledger.entries, "skipped") + _input_lines(ledger.entries, "partial")
    lines += [f"  warning: {safe(warning)}" for warning in ledger.warnings]
    lines += [f"  wrote {safe(path)}" for path in written]
    return lines


def nothing_usable(ledger: Ledger, paths: Sequence[Path]) -> str | None:
    """Why no event log in the inputs could be read (one line), or None when one could."""
    if any(
        e.status != "skipped" and (e.format == "evtx" or (e.format in EXPORT_KINDS and e.records))
        for e in ledger.entries
    ):
        return None
    given = ", ".join(safe(p) for p in paths)
    looked = _plural(len(ledger.entries), "file")
    reasons: dict[str, InputEntry] = {}
    evtx_first = sorted(ledger.entries, key=lambda e: (e.format != "evtx", e.id))
    for entry in evtx_first:
        if entry.status == "skipped" and entry.reason:
            reasons.setdefault(_reason_key(entry), entry)
    shown = [f"{safe(e.path)}: {safe(key)}" for key, e in list(reasons.items())[:3]]
    more = f"; and {len(reasons) - 3} other reasons" if len(reasons) > 3 else ""
    why = f": {'; '.join(shown)}{more}" if shown else ""
    return f"no usable Windows event log (.evtx) in {given} ({looked} looked at){why}"
