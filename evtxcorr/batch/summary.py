"""The batch's own outputs: summary.json, summary.csv and summary.html, one row per case.

Case names and paths come from file names, so they are attacker-controlled text like event data: the
HTML page escapes them (the report's Jinja environment, CSP and style), links to a case's report by its
percent-encoded folder name, and the CSV neutralises cells a spreadsheet would run as a formula.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from evtxcorr import __version__
from evtxcorr.batch.state import report_name, utf8
from evtxcorr.output import write_atomic
from evtxcorr.render.env import environment
from evtxcorr.render.messages import messages
from evtxcorr.render.timeline import iso_utc, zone_offsets

SUMMARY_FILES = ("summary.html", "summary.json", "summary.csv")
CSV_COLUMNS = ("case", "path", "status", "reason", "cause", "kind", "host", "incident", "confidence",
               "certainty", "records", "seconds", "worker", "report")  # fmt: skip
# A spreadsheet runs a cell starting with one of these as a formula (OWASP "CSV injection").
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
LINK_ORDER = ("html", "md", "json")


def totals(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    counts = {status: sum(r["status"] == status for r in rows) for status in ("ok", "failed", "skipped")}
    return {
        "cases": len(rows),
        **counts,
        "findings": sum(len(r["findings"]) for r in rows),
        "records": sum(int(r["records"] or 0) for r in rows),
        "seconds": round(sum(float(r["seconds"] or 0) for r in rows), 3),
    }


def report_link(row: Mapping[str, Any], formats: Sequence[str]) -> str | None:
    """Relative link to the case's report (HTML first), or None when it has none."""
    if row["status"] != "ok":
        return None
    for fmt in LINK_ORDER:
        if fmt in formats:
            folder = row["case"].encode("utf-8", "surrogateescape")  # the folder's own bytes
            return f"{quote(folder, safe='')}/{report_name(fmt)}"
    return None


def csv_cell(value: object) -> str:
    text = "" if value is None else str(value)
    return f"'{text}" if text.startswith(_FORMULA_START) else text


def summary_json(rows: Sequence[Mapping[str, Any]], generated: datetime) -> str:
    data = {
        "tool": "evtxcorr",
        "version": __version__,
        "generated": iso_utc(generated),
        "totals": totals(rows),
        "cases": [dict(r) for r in rows],
    }
    return json.dumps(data, ensure_ascii=False, indent=2) + "\n"


def summary_csv(rows: Sequence[Mapping[str, Any]], links: Mapping[str, str | None]) -> str:
    """One line per case and finding (a case without findings has one line with those cells empty).
    Starts with a byte-order mark so that spreadsheets read it as UTF-8."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        for finding in row["findings"] or [{}]:
            blank = dict.fromkeys(("cause", "kind", "host", "incident", "confidence", "certainty"))
            values = {**row, **blank, **finding}
            values["report"] = links.get(row["case"])
            writer.writerow([csv_cell(values.get(column)) for column in CSV_COLUMNS])
    return "\ufeff" + out.getvalue()


def verdicts(findings: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Findings of one cause in one incident as one line: every host, the highest confidence (a
    cluster-wide outage is found on every node)."""
    grouped: dict[tuple[str, str], dict[str, Any]] = {}
    for finding in findings:
        key = (finding["cause"], finding["incident"])  # a cause is of one kind, so the key holds it
        line = grouped.setdefault(key, {**finding, "hosts": [], "confidence": finding["confidence"]})
        line["hosts"].append(finding["host"])
        line["confidence"] = max(line["confidence"] or 0.0, finding["confidence"] or 0.0)
    return [{**line, "host": ", ".join(line["hosts"])} for line in grouped.values()]


def summary_html(
    rows: Sequence[Mapping[str, Any]],
    *,
    links: Mapping[str, str | None],
    titles: Mapping[str, str],
    lang: str,
    tz: str,
    generated: datetime,
) -> str:
    template = environment(True).get_template("summary.html.j2")
    return template.render(
        msg=messages(lang),
        lang=lang,
        tool="evtxcorr",
        version=__version__,
        generated=iso_utc(generated),
        zone={"name": tz, "offsets": zone_offsets([generated], tz)},
        totals=totals(rows),
        cases=[
            {**row, "link": links.get(row["case"]), "verdicts": verdicts(row["findings"])} for row in rows
        ],
        titles=titles,
    )


def write_summaries(
    outdir: Path,
    rows: Sequence[Mapping[str, Any]],
    *,
    report_formats: Mapping[str, Sequence[str]],
    titles: Mapping[str, str],
    lang: str,
    tz: str,
) -> list[Path]:
    """Write the three summary files (each atomically); returns their paths."""
    generated = datetime.now(UTC)
    links = {row["case"]: report_link(row, report_formats.get(row["case"], ())) for row in rows}
    texts = {
        "summary.html": summary_html(rows, links=links, titles=titles, lang=lang, tz=tz, generated=generated),
        "summary.json": summary_json(rows, generated),
        "summary.csv": summary_csv(rows, links),
    }
    for name, text in texts.items():
        write_atomic(outdir / name, utf8(text))
    return [outdir / name for name in SUMMARY_FILES]
