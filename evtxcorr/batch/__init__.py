"""`evtxcorr batch`: a verdict for every case (bundle) in an archive of them, each analysed on its own.

run_batch(paths, outdir, BatchOptions(...)) plans the cases (cases.py), skips those a previous run
finished with the same inputs and settings (state.py), runs the others in child processes here or on
a Dask cluster (runner.py, child.py), saves each case's reports and state as it ends, and writes
summary.json / .csv / .html (summary.py), also when the batch is interrupted.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from evtxcorr.batch import state
from evtxcorr.batch.cases import Case, fingerprint, plan_cases
from evtxcorr.batch.child import outcome
from evtxcorr.batch.runner import run_local, run_on_cluster
from evtxcorr.batch.summary import write_summaries
from evtxcorr.errors import EvtxcorrError, InputError
from evtxcorr.output import DEFAULT_FORMATS, SUFFIXES
from evtxcorr.parse import BACKENDS
from evtxcorr.render.messages import check_lang
from evtxcorr.render.timeline import zone
from evtxcorr.ruleset import load_ruleset, with_builtin

__all__ = ["BatchOptions", "BatchResult", "default_workers", "run_batch"]

LOCK_FILE = ".evtxcorr-batch.lock"
INTERRUPTED = "interrupted before it finished; run the batch again to do it"


def default_workers() -> int:
    """The CPUs this process may use."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class BatchOptions:
    """How a batch runs and what each case's reports look like."""

    formats: tuple[str, ...] = DEFAULT_FORMATS
    lang: str = "en"
    tz: str = "UTC"
    source_tz: str | None = None  # zone of exports whose times are local with no zone (CSV), as analyze
    backend: str = "evtx"
    rule_dirs: tuple[Path, ...] = ()
    workers: int | None = None  # None: default_workers()
    scheduler: str | None = None  # a Dask scheduler address: run there instead of here
    case_timeout: float | None = None  # seconds; a case running longer is stopped and failed
    force: bool = False  # redo every case, finished or not
    work_dir: Path | None = None  # where cases' private folders go (default: the system temp dir)


@dataclass
class BatchResult:
    """The summary rows (summary.json's cases, in plan order) and how many cases ran this time."""

    rows: list[dict[str, Any]]
    summary_files: list[Path]
    ran: int = 0
    reused: int = 0
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [row for row in self.rows if row["status"] == "failed"]


class CaseProgress(Protocol):
    """What run_batch reports progress to (evtxcorr.progress.CaseBar draws it)."""

    def start(self, total: int, done: Mapping[str, int]) -> None: ...

    def update(self, status: str) -> None: ...


@dataclass
class _Run:
    """State of one run_batch call: cases by name, rows, and what the summary page needs."""

    outdir: Path
    options: BatchOptions
    settings: dict[str, Any]
    cases: dict[str, Case] = field(default_factory=dict)
    inputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)
    formats: dict[str, Sequence[str]] = field(default_factory=dict)
    titles: dict[str, str] = field(default_factory=dict)
    reused: int = 0  # cases a previous run finished, not run again


def run_batch(
    paths: Sequence[Path],
    outdir: Path,
    options: BatchOptions = BatchOptions(),
    *,
    progress: CaseProgress | None = None,
) -> BatchResult:
    """Analyse every case under `paths`, each on its own, into OUTDIR/<case>/ and OUTDIR/summary.*.

    Raises InputError for unusable arguments (a missing path, no case at all, an output folder that is
    a file or lies inside a case, another batch writing to OUTDIR). A case that fails does not stop
    the others; an interruption (KeyboardInterrupt, SystemExit) stops every running case, writes the
    summary of what is done, and goes on up.
    """
    _check(options)
    outdir = Path(outdir).resolve()
    if outdir.exists() and not outdir.is_dir():
        raise InputError(f"the output {outdir} is a file; give -o a folder")
    exclude = [outdir] + ([options.work_dir] if options.work_dir else [])
    cases = plan_cases(paths, exclude=exclude)
    if not cases:
        raise InputError(f"no case found in {', '.join(map(str, paths))} (an empty folder?)")
    outdir.mkdir(parents=True, exist_ok=True)
    settings = state.settings_key(
        lang=options.lang,
        tz=options.tz,
        source_tz=options.source_tz,
        backend=options.backend,
        rule_dirs=options.rule_dirs,
    )
    run = _Run(outdir, options, settings, cases={case.name: case for case in cases})
    with _locked(outdir):
        jobs = _plan(run)
        if progress:
            progress.start(len(cases), _counts(run.rows.values()))

        def finished(job: Mapping[str, Any], result: dict[str, Any]) -> None:
            try:
                _save(run, run.cases[job["case"]], result)
            except OSError as exc:  # the output folder is full or gone: every case would fail so
                raise EvtxcorrError(f"cannot write the results of case {job['case']!r}: {exc}") from exc
            if progress:
                progress.update(result["status"])

        try:
            _execute(jobs, finished, options)
        finally:
            for case in cases:
                run.rows.setdefault(case.name, state.make_row(case, outcome("failed", INTERRUPTED)))
            rows = [run.rows[case.name] for case in cases]
            files = write_summaries(
                outdir, rows, report_formats=run.formats, titles=run.titles, lang=options.lang, tz=options.tz
            )
    return BatchResult(rows, files, ran=len(jobs), reused=run.reused, counts=_counts(rows))


def _check(options: BatchOptions) -> None:
    """Settings every case would fail on, refused before any case runs."""
    check_lang(options.lang)
    zone(options.tz)
    if options.source_tz is not None:
        zone(options.source_tz)
    unknown = [fmt for fmt in options.formats if fmt not in SUFFIXES]
    if unknown or not options.formats:
        known = ", ".join(SUFFIXES)
        raise InputError(
            f"unknown report format {unknown[0]!r} (known: {known})"
            if unknown
            else f"no report format (known: {known})"
        )
    if options.backend not in BACKENDS:
        raise InputError(f"unknown parser {options.backend!r} (known: {', '.join(BACKENDS)})")
    if options.workers is not None and options.workers < 1:
        raise InputError("workers must be at least 1")
    load_ruleset(with_builtin(options.rule_dirs))  # a RuleError naming file and line, once


def _plan(run: _Run) -> list[dict[str, Any]]:
    """Rows for the cases that need no run; jobs for the others."""
    jobs = []
    for case in run.cases.values():
        if case.skip_reason:
            run.rows[case.name] = state.make_row(case, outcome("skipped", case.skip_reason))
            continue
        inputs = run.inputs[case.name] = fingerprint(case.paths)
        case_dir = run.outdir / case.name
        saved = None if run.options.force else state.load(case_dir)
        if state.reusable(saved, case_dir, inputs=inputs, settings=run.settings, formats=run.options.formats):
            assert saved is not None
            run.rows[case.name] = saved["row"]
            run.formats[case.name] = list(saved.get("reports") or ())
            run.titles.update(saved.get("titles") or {})
            run.reused += 1
            continue
        jobs.append(_job(case, run.options))
    return jobs


def _job(case: Case, options: BatchOptions) -> dict[str, Any]:
    """What the case's child process needs (plain JSON: it may travel to a Dask worker)."""
    return {
        "case": case.name,
        "paths": [str(p) for p in case.paths],
        "archive": str(case.archive) if case.archive else None,
        "formats": list(options.formats),
        "lang": options.lang,
        "tz": options.tz,
        "source_tz": options.source_tz,
        "backend": options.backend,
        "rules": [str(Path(d).resolve()) for d in options.rule_dirs],
    }


def _save(run: _Run, case: Case, result: dict[str, Any]) -> None:
    row = state.make_row(case, result)
    state.save(run.outdir / case.name, row, result, inputs=run.inputs[case.name], settings=run.settings)
    run.rows[case.name] = row
    run.formats[case.name] = list(result.get("reports") or ())
    run.titles.update(result.get("titles") or {})


def _execute(jobs: list[dict[str, Any]], finished: Any, options: BatchOptions) -> None:
    if not jobs:
        return
    if options.scheduler:
        run_on_cluster(
            jobs,
            finished,
            scheduler=options.scheduler,
            timeout=options.case_timeout,
            work_root=options.work_dir,
        )
        return
    work_root = Path(tempfile.mkdtemp(prefix="evtxcorr-batch-", dir=options.work_dir))
    try:
        workers = options.workers or default_workers()
        run_local(jobs, finished, workers=workers, timeout=options.case_timeout, work_root=work_root)
    finally:
        shutil.rmtree(work_root, ignore_errors=True)


def _counts(rows: Any) -> dict[str, int]:
    counts = {"ok": 0, "failed": 0, "skipped": 0}
    for row in rows:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    return counts


@contextlib.contextmanager
def _locked(outdir: Path) -> Iterator[None]:
    """One batch at a time per output folder (an advisory lock, released when the process ends)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no lock
        yield
        return
    with (outdir / LOCK_FILE).open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise InputError(f"another evtxcorr batch is writing to {outdir}") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
