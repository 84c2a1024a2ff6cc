"""One case, run in a process of its own: forked from a fork server that has evtxcorr loaded
(run_forked), or started as `python -m evtxcorr.batch.child WORK_DIR BATCH_PID` (main).

WORK_DIR is the case's private folder: the parent writes `job.json` there, the child analyses, renders
and writes `result.json`, and the parent removes the folder, whatever happened. Zip members are
extracted inside it too, so a case that is stopped (time limit, Ctrl-C) leaves nothing behind once the
parent has removed it. Nothing here writes to the batch's output folder: the parent does.
"""

from __future__ import annotations

import json
import os
import select
import signal
import sys
import threading
import time
import traceback
from collections.abc import Mapping
from pathlib import Path, PurePath
from typing import Any

from evtxcorr.analyze import Options, analyze
from evtxcorr.errors import EvtxcorrError
from evtxcorr.ledger import Ledger
from evtxcorr.output import write_atomic
from evtxcorr.render import render

JOB_FILE = "job.json"
RESULT_FILE = "result.json"
LOG_FILE = "stderr.log"
REASON_FILES_SHOWN = 3


def outcome(status: str, reason: str | None = None, **fields: Any) -> dict[str, Any]:
    """A case result; an 'ok' one also has findings, records, reports and titles."""
    return {"status": status, "reason": reason, "findings": [], "records": 0, **fields}


def execute(job: Mapping[str, Any], work_dir: Path) -> dict[str, Any]:
    """Analyse one case and render its reports (in memory): the result the parent persists."""
    counted: list[int] = []
    options = Options(
        backend=str(job.get("backend", "evtx")),
        rule_dirs=tuple(Path(p) for p in job.get("rules", ())),
        work_dir=work_dir,
        jobs=1,  # the batch runs cases in parallel already
        source_tz=job.get("source_tz"),
    )
    report = analyze([Path(p) for p in job["paths"]], options, on_sources=lambda s: counted.append(len(s)))
    if not sum(counted):
        return _without_event_log(report.ledger, job.get("archive"))  # type: ignore[arg-type]
    lang, tz = str(job.get("lang", "en")), str(job.get("tz", "UTC"))
    texts = {"json": render(report, "json", lang=lang, tz=tz)}
    for fmt in job["formats"]:
        if fmt not in texts:
            texts[fmt] = render(report, fmt, lang=lang, tz=tz)
    data = json.loads(texts["json"])
    verdicts = [*data["findings"], *data.get("benign", [])]  # benign: explained as expected, nothing to do
    return outcome(
        "ok",
        findings=[summary_finding(f) for f in verdicts],
        records=int(data["totals"]["records_unique"]),
        reports={fmt: texts[fmt] for fmt in job["formats"]},
        titles={f["cause"]: f.get("title") or f["cause"] for f in verdicts},
    )


def summary_finding(finding: Mapping[str, Any]) -> dict[str, Any]:
    """A report finding as summary.json lists it. A cluster-scoped finding (host null, `hosts` listed)
    gets its hosts joined in `host`, as the report's input accounting does. `kind` tells a cause
    ('cause') from an expected, harmless explanation ('benign'); `certainty` is 'unconfirmed' when
    missing logs could still overturn the verdict."""
    host = finding.get("host") or ", ".join(str(h) for h in finding.get("hosts") or ())
    return {
        "cause": finding["cause"],
        "host": host,
        "incident": finding.get("incident"),
        "confidence": finding.get("confidence"),
        "kind": finding.get("kind") or "cause",
        "certainty": finding.get("certainty"),
        "confidence_range": finding.get("confidence_range"),
    }


def _without_event_log(ledger: Ledger, archive: str | None) -> dict[str, Any]:
    """An archive case whose archive cannot be read failed; any other case without a log is skipped."""
    for entry in ledger.entries:
        if archive and entry.path == archive and entry.status == "skipped":
            return outcome("failed", f"the archive cannot be read: {entry.reason}")
    if not ledger.entries:
        return outcome("skipped", "no event log: the folder is empty")
    shown = "; ".join(
        f"{PurePath(e.path.replace('!', '/')).name}: {e.reason}" for e in ledger.entries[:REASON_FILES_SHOWN]
    )
    more = len(ledger.entries) - REASON_FILES_SHOWN
    count = len(ledger.entries)
    return outcome(
        "skipped",
        f"no event log in {count} file{'s' if count != 1 else ''} ({shown}{f'; {more} more' if more > 0 else ''})",
    )


def _die_with(batch_pid: int) -> None:
    """Kill this case (its whole process group) as soon as the batch process `batch_pid` is gone, so
    that a crash or kill -9 of the batch leaves no case at work. (PR_SET_PDEATHSIG would watch the
    fork server, which itself outlives the batch while cases hold its liveness pipe.)"""

    def watch() -> None:
        try:
            handle = os.pidfd_open(batch_pid)  # Linux: readable once the process has ended
        except (AttributeError, OSError):
            handle = None
        if handle is not None:
            select.select([handle], [], [])
        else:
            while _alive(batch_pid):
                time.sleep(1.0)
        if hasattr(os, "killpg"):
            os.killpg(os.getpgrp(), signal.SIGKILL)  # the case and whatever it started
        os._exit(1)

    threading.Thread(target=watch, name="evtxcorr-batch-watch", daemon=True).start()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def run(work_dir: Path) -> None:
    """Read the job, run it, write the result: every outcome is a result, never an exception."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    try:
        job = json.loads((work_dir / JOB_FILE).read_text(encoding="utf-8"))
        result = execute(job, work_dir)
    except EvtxcorrError as exc:
        result = outcome("failed", str(exc))
    except Exception as exc:  # a bug or an unforeseen input: this case fails, the batch goes on
        result = outcome(
            "failed", f"internal error: {type(exc).__name__}: {exc}", detail=traceback.format_exc()
        )
    write_atomic(work_dir / RESULT_FILE, json.dumps(result))  # ASCII: \u escapes keep odd file names


def run_forked(work_dir: str, batch_pid: int) -> None:
    """Entry point in a process forked from the multiprocessing fork server (modules already loaded):
    a session of its own (so the whole case can be killed as a group), stderr to the case's log."""
    os.setsid()
    _die_with(batch_pid)
    log = os.open(Path(work_dir) / LOG_FILE, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    run(Path(work_dir))


def main(argv: list[str] | None = None) -> int:
    """Entry point as `python -m evtxcorr.batch.child WORK_DIR BATCH_PID` (where the fork server
    cannot be used: on a Dask worker, on Windows)."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) > 1:
        _die_with(int(args[1]))
    run(Path(args[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
