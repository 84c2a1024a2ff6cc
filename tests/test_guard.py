"""A hang or a death inside the evtx parser costs one chunk, never the run (issue 15, guard.py).

The evtx parser is replaced, in the guarded child (fork inherits the test's monkeypatches), by one that
hangs or dies on one chosen chunk. The main hang is `any(itertools.repeat(False))`: a loop in C that
holds the GIL, never returns to the interpreter and never checks for signals, so no Python signal
handler or thread of that process can stop it, as with a stuck Rust call (checked by hand: SIGALRM with
a raising handler does not interrupt it; a catastrophic regex does get interrupted, so it is no
stand-in). A pure-Python loop is tried too. Only the kernel (the watchdog's SIGPROF, default action)
ends either. What is checked: the run ends, the chunk is read with python-evtx, a warning names it,
every other record and every ledger count is as in a run without the fault. No wall-clock bound: the
watchdog counts CPU time and the test only waits for it.
"""

from __future__ import annotations

import itertools
import json
import mmap
import os
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import evtxcorr.parse as parse_module
from evtxcorr.analyze import Options, analyze
from evtxcorr.ledger import InputEntry
from evtxcorr.model import Report, Source
from evtxcorr.parse import guard, parse, pure, read_source, rust
from evtxcorr.parse.chunks import CHUNK_SIZE, FILE_HEADER_SIZE
from evtxcorr.timeline import write_timeline

SCENARIO = "shared-nic-sole-dc-path"
CHUNK = 3  # the chunk whose Rust calls go wrong (System.evtx has 7)
FIRST_ID_AT = 8 + 8  # chunk header: magic, first event record number, then first event record id
GIVE_UP_S = 120  # only for the subprocess tests: how long to wait for the run under test to start


@pytest.fixture(scope="module")
def log(bundles_dir: Path) -> Path:
    return bundles_dir / SCENARIO / "HV01" / "System.evtx"


def _first_id(log: Path, index: int) -> int:
    data = log.read_bytes()
    return struct.unpack_from("<Q", data, FILE_HEADER_SIZE + index * CHUNK_SIZE + FIRST_ID_AT)[0]


def _c_hang() -> None:
    """A C loop that holds the GIL and never checks for signals: never returns."""
    any(itertools.repeat(False))


def test_the_stand_in_hang_is_deaf_to_python_signal_handlers() -> None:
    """_c_hang stands for a stuck Rust call: a Python handler (due at 0.2 s of CPU) never runs, only the
    kernel's default action for SIGPROF (at 1 s) ends the process."""
    code = (
        "import itertools, signal, sys\n"
        "signal.signal(signal.SIGVTALRM, lambda *_: sys.exit(3))\n"
        "signal.setitimer(signal.ITIMER_VIRTUAL, 0.2)\n"
        "signal.setitimer(signal.ITIMER_PROF, 1.0)\n"
        "any(itertools.repeat(False))\n"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == -signal.SIGPROF


def _python_hang() -> None:
    while True:
        pass


def _kill_self() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _fault_on(monkeypatch: pytest.MonkeyPatch, first_id: int, fault: Callable[[], None], at: str) -> None:
    """The evtx parser runs `fault` for the chunk whose first record id is `first_id`: when the parser
    is created (`at` 'create') or on the second next() of its records ('next')."""
    real = rust.evtx.PyEvtxParser

    class Faulty:
        def __init__(self, stream: object, **kwargs: object) -> None:
            raw = stream.getvalue()  # type: ignore[attr-defined]
            self.chosen = struct.unpack_from("<Q", raw, FILE_HEADER_SIZE + FIRST_ID_AT)[0] == first_id
            if self.chosen and at == "create":
                fault()
            self.parser = real(stream, **kwargs)

        def records(self) -> object:
            for number, item in enumerate(self.parser.records()):
                if self.chosen and number == 1:
                    fault()
                yield item

    monkeypatch.setattr(rust.evtx, "PyEvtxParser", Faulty)


def _plain(log: Path) -> tuple[list[dict], InputEntry]:
    entry = InputEntry(path=log.name)
    return list(parse(Source(log, log.name, "evtx"), entry)), entry


def _guarded(log: Path, **options: object) -> tuple[list[dict], InputEntry]:
    entry = InputEntry(path=log.name)
    return list(read_source(Source(log, log.name, "evtx"), entry, **options)), entry  # type: ignore[arg-type]


def _counts(entry: InputEntry) -> dict[str, object]:
    fields = entry.as_dict()
    fields.pop("warnings")
    return fields


def _same_but_chunk(records: list[dict], plain: list[dict], chunk: int) -> None:
    """Every record outside `chunk` identical; the chunk's records the same ones, read with python-evtx."""
    assert [r for r in records if r["chunk"] != chunk] == [r for r in plain if r["chunk"] != chunk]
    mine = [r for r in records if r["chunk"] == chunk]
    theirs = [r for r in plain if r["chunk"] == chunk]
    assert mine and {r["parser"] for r in mine} == {pure.NAME}
    assert [(r["record_id"], r["offset"]) for r in mine] == [(r["record_id"], r["offset"]) for r in theirs]
    assert [{**r, "parser": None} for r in mine] == [{**r, "parser": None} for r in theirs]


def _chunk_note(why: str) -> str:
    """The warning for CHUNK after its evtx parser child was killed (`why`: how it ended)."""
    offset = FILE_HEADER_SIZE + CHUNK * CHUNK_SIZE
    return f"chunk {CHUNK} at offset {offset}: the evtx parser {why}; read with python-evtx"


def _verdicts(report: object) -> list[tuple[str, str, float]]:
    return [(f.incident, f.cause, f.confidence) for f in report.findings]  # type: ignore[attr-defined]


@pytest.mark.parametrize(("fault", "at"), [(_c_hang, "create"), (_c_hang, "next"), (_python_hang, "next")])
def test_a_hang_in_the_evtx_parser_costs_its_chunk(
    log: Path, monkeypatch: pytest.MonkeyPatch, fault: Callable[[], None], at: str
) -> None:
    plain, plain_entry = _plain(log)
    assert guard.available()
    monkeypatch.setattr(guard, "WATCHDOG_CPU_SECONDS", 1.0)
    monkeypatch.setattr(guard, "BATCH", 50)  # records stream before the hang: none may come twice
    _fault_on(monkeypatch, _first_id(log, CHUNK), fault, at)
    monkeypatch.setattr(parse_module, "PROGRESS_CHUNKS", 1)  # progress updates the entry before the hang
    ticks: list[int] = []
    records, entry = _guarded(log, on_progress=ticks.append)
    assert ticks[: CHUNK + 1] == [FILE_HEADER_SIZE + i * CHUNK_SIZE for i in range(CHUNK + 1)]
    _same_but_chunk(records, plain, CHUNK)
    assert _counts(entry) == _counts(plain_entry)
    note = _chunk_note("did not return within 1 s of CPU (killed)")
    assert entry.warnings == [*plain_entry.warnings, note]
    assert entry.status == plain_entry.status == "ok"


def _sleep_hang() -> None:
    """A call that never returns and uses no CPU (a deadlock): the CPU watchdog never fires."""
    time.sleep(3600)


@pytest.mark.parametrize("at", ["create", "next"])
def test_a_hang_without_cpu_is_found_by_the_parent_and_costs_its_chunk(
    log: Path, monkeypatch: pytest.MonkeyPatch, at: str
) -> None:
    plain, plain_entry = _plain(log)
    monkeypatch.setattr(guard, "STUCK_WALL_SECONDS", 1.0)
    monkeypatch.setattr(guard, "POLL_SECONDS", 0.1)
    _fault_on(monkeypatch, _first_id(log, CHUNK), _sleep_hang, at)
    records, entry = _guarded(log)
    _same_but_chunk(records, plain, CHUNK)
    assert _counts(entry) == _counts(plain_entry)
    note = _chunk_note("made no progress for 1 s without using CPU (killed)")
    assert entry.warnings == [*plain_entry.warnings, note]


def _pooled_with_a_chunk_to_hang(
    bundles_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> tuple[Path, Report, int]:
    """(the bundle, its report read in this process, the first chunk of HV01's System.evtx past chunk 0
    with decoded records), with the selective pool forced on (the fixtures are under its size)."""
    import evtxcorr.parse.pool as pool

    bundle = bundles_dir / SCENARIO
    plain = analyze([bundle], Options(work_dir=tmp_path, jobs=1))
    decoded = [i for i in range(1, 7) if len(_rows_of(plain, i))]
    assert decoded, "no chunk past the first decoded: nothing to hang"
    monkeypatch.setattr(pool, "MIN_PARALLEL_BYTES", 0)
    return bundle, plain, decoded[0]


def test_the_pool_and_the_planning_find_hangs_without_cpu(
    bundles_dir: Path, log: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The selective pool (forced) waits on several children at once; planning in call_guarded."""
    bundle, plain, chunk = _pooled_with_a_chunk_to_hang(bundles_dir, monkeypatch, tmp_path)
    monkeypatch.setattr(guard, "STUCK_WALL_SECONDS", 1.0)
    monkeypatch.setattr(guard, "POLL_SECONDS", 0.1)
    _fault_on(monkeypatch, _first_id(log, chunk), _sleep_hang, "next")
    pooled = analyze([bundle], Options(work_dir=tmp_path, jobs=2))
    assert pooled.ledger.totals() == plain.ledger.totals()
    assert _verdicts(pooled) == _verdicts(plain)
    [(path, note)] = _extra_warnings(pooled, plain)
    assert path.endswith("HV01/System.evtx") and "made no progress for 1 s" in note

    _fault_on(monkeypatch, _first_id(log, 0), _sleep_hang, "create")  # planning reads chunk 0 first
    planned = analyze([bundle], Options(work_dir=tmp_path, jobs=1))
    assert planned.ledger.warnings[-1].startswith("the evtx parser was killed while reading the logs' first")
    assert _verdicts(planned) == _verdicts(plain)


def test_a_child_killed_in_the_evtx_parser_is_retried_and_accounted_for(
    log: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain, plain_entry = _plain(log)
    monkeypatch.setattr(guard, "BATCH", 50)
    _fault_on(monkeypatch, _first_id(log, CHUNK), _kill_self, "next")
    records, entry = _guarded(log)
    _same_but_chunk(records, plain, CHUNK)
    assert _counts(entry) == _counts(plain_entry)
    assert entry.warnings[-1] == _chunk_note("was killed (SIGKILL)")


def _dies_after(monkeypatch: pytest.MonkeyPatch, count: int, deaths: Path | None) -> None:
    """A child dies (SIGKILL, outside any Rust call) after parsing `count` records; with `deaths`, only
    while that file does not exist yet (the first child), else every time."""
    real = guard.parse

    def dying(*args: object, **kwargs: object) -> object:
        for number, record in enumerate(real(*args, **kwargs), start=1):  # type: ignore[arg-type]
            if number == count and (deaths is None or not deaths.exists()):
                if deaths is not None:
                    deaths.touch()
                _kill_self()
            yield record

    monkeypatch.setattr(guard, "parse", dying)


def test_a_death_outside_the_evtx_parser_is_read_again_without_a_record_twice(
    log: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    plain, plain_entry = _plain(log)
    monkeypatch.setattr(guard, "BATCH", 50)
    _dies_after(monkeypatch, 420, tmp_path / "died")
    records, entry = _guarded(log)
    assert (tmp_path / "died").exists()
    assert records == plain
    assert _counts(entry) == _counts(plain_entry)
    assert entry.warnings == [
        *plain_entry.warnings,
        "the process reading it died (SIGKILL) outside the evtx parser; read again",
    ]


def test_a_file_whose_reader_keeps_dying_costs_its_rest_only(
    log: Path, bundles_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain, _plain_entry = _plain(log)
    monkeypatch.setattr(guard, "BATCH", 50)
    _dies_after(monkeypatch, 120, None)
    records, entry = _guarded(log)
    assert records == plain[:100]  # the batches sent before the first death, never twice
    assert entry.status == "partial" and entry.records == 100
    assert entry.reason == (
        "the process reading it died 3 times (SIGKILL, SIGKILL, SIGKILL); "
        "100 record(s) read before that, the rest of the file not read"
    )


def test_more_killed_chunks_than_the_bound_read_the_file_with_python_evtx(
    log: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain, plain_entry = _plain(log)
    monkeypatch.setattr(guard, "MAX_KILLED_CHUNKS", 2)
    real = rust.evtx.PyEvtxParser

    def dying(*args: object, **kwargs: object) -> object:  # every chunk's parser kills its process
        _kill_self()
        return real(*args, **kwargs)

    monkeypatch.setattr(rust.evtx, "PyEvtxParser", dying)
    records, entry = _guarded(log)
    assert {r["parser"] for r in records} == {pure.NAME}
    assert [{**r, "parser": None} for r in records] == [{**r, "parser": None} for r in plain]
    assert _counts(entry) == _counts(plain_entry)
    assert (
        entry.warnings[-1] == "the evtx parser was killed on 2 chunks: the whole file read with python-evtx"
    )
    assert [w for w in entry.warnings if "(SIGKILL); read with python-evtx" in w] == [
        f"chunk {i} at offset {FILE_HEADER_SIZE + i * CHUNK_SIZE}: the evtx parser was killed (SIGKILL); "
        "read with python-evtx"
        for i in (0, 1)
    ]


def _rows_of(report: object, chunk: int) -> object:
    """The table rows read from HV01's System.evtx chunk `chunk`."""
    entry = next(e for e in report.ledger.entries if e.path.endswith("HV01/System.evtx"))  # type: ignore[attr-defined]
    frame = report.frame  # type: ignore[attr-defined]
    return frame[(frame["input_id"] == entry.id) & (frame["chunk"] == chunk)]


def _extra_warnings(report: object, plain: object) -> list[tuple[str, str]]:
    """(file, warning) of `report` that `plain` has not."""
    known = {(e.path, w) for e in plain.ledger.entries for w in e.warnings}  # type: ignore[attr-defined]
    found = [(e.path, w) for e in report.ledger.entries for w in e.warnings]  # type: ignore[attr-defined]
    return [item for item in found if item not in known]


def test_analyze_and_timeline_finish_past_a_hang(
    bundles_dir: Path, log: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    bundle = bundles_dir / SCENARIO
    plain = analyze([bundle], Options(work_dir=tmp_path, all_records=True))
    monkeypatch.setattr(guard, "WATCHDOG_CPU_SECONDS", 1.0)
    _fault_on(monkeypatch, _first_id(log, CHUNK), _c_hang, "create")
    hung = analyze([bundle], Options(work_dir=tmp_path, all_records=True))
    assert hung.ledger.totals() == plain.ledger.totals()
    assert _verdicts(hung) == _verdicts(plain)
    [(path, note)] = _extra_warnings(hung, plain)
    assert path.endswith("HV01/System.evtx") and note.startswith(f"chunk {CHUNK} at offset ")
    rows = _rows_of(hung, CHUNK)
    assert len(rows) == len(_rows_of(plain, CHUNK)) > 0 and set(rows["parser"]) == {pure.NAME}

    out = tmp_path / "timeline.jsonl"
    result = write_timeline([bundle], out, fmt="jsonl", options=Options(work_dir=tmp_path))
    lines = out.read_text(encoding="utf-8").splitlines()
    assert result.rows == len(lines) == len(plain.frame)
    assert {r["parser"] for r in map(json.loads, lines) if r["chunk"] == CHUNK and "HV01" in r["file"]} == {
        pure.NAME
    }
    assert any(w.startswith(f"chunk {CHUNK} at offset ") for e in result.ledger.entries for w in e.warnings)


def test_selective_pool_past_a_hang(
    bundles_dir: Path, log: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The pool (forced: the fixtures are under its size) gives the same answers, a hung chunk aside."""
    bundle, plain, chunk = _pooled_with_a_chunk_to_hang(bundles_dir, monkeypatch, tmp_path)
    monkeypatch.setattr(guard, "WATCHDOG_CPU_SECONDS", 1.0)
    _fault_on(monkeypatch, _first_id(log, chunk), _c_hang, "next")
    pooled = analyze([bundle], Options(work_dir=tmp_path, jobs=2))
    assert pooled.ledger.totals() == plain.ledger.totals()
    assert _verdicts(pooled) == _verdicts(plain)
    for mine, theirs in zip(pooled.ledger.entries, plain.ledger.entries, strict=True):
        assert _counts(mine) == _counts(theirs)
    [(path, note)] = _extra_warnings(pooled, plain)
    assert path.endswith("HV01/System.evtx") and note.startswith(f"chunk {chunk} at offset ")
    rows = _rows_of(pooled, chunk)
    assert len(rows) == len(_rows_of(plain, chunk)) and set(rows["parser"]) == {pure.NAME}


def test_rules_that_fail_to_load_end_the_planning_child(
    bundles_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The built-in rules load while a child plans selective parsing: when they fail, it is killed."""
    import evtxcorr.analyze as analyze_module
    from evtxcorr.errors import RuleError

    started: list[guard.Pending] = []

    class Recorded(guard.Pending):
        def __init__(self, *args: object) -> None:
            super().__init__(*args)  # type: ignore[arg-type]
            started.append(self)

    def broken(_dirs: object) -> None:
        assert started  # the child was started first, and plans meanwhile
        raise RuleError("broken on purpose")

    monkeypatch.setattr(analyze_module, "Pending", Recorded)
    monkeypatch.setattr(analyze_module, "_rules", broken)
    with pytest.raises(RuleError, match="broken on purpose"):
        analyze([bundles_dir / SCENARIO], Options(work_dir=tmp_path))
    assert len(started) == 1 and started[0].process.exitcode is not None  # reaped, not left running
    assert list(tmp_path.iterdir()) == []


def test_a_teams_rules_are_loaded_before_any_input_is_touched(
    bundles_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import evtxcorr.analyze as analyze_module
    from evtxcorr.errors import RuleError

    def broken(_dirs: object) -> None:
        raise RuleError("broken on purpose")

    def touched(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("the inputs were looked at before the rules")

    monkeypatch.setattr(analyze_module, "_rules", broken)
    monkeypatch.setattr(analyze_module, "discover", touched)
    with pytest.raises(RuleError, match="broken on purpose"):
        analyze([bundles_dir / SCENARIO], Options(work_dir=tmp_path, rule_dirs=(tmp_path,)))


def test_a_hang_while_planning_selective_parsing_decodes_every_log_whole(
    bundles_dir: Path, log: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """plan.decode_whole reads each log's first record with the evtx parser, in a guarded child too."""
    bundle = bundles_dir / SCENARIO
    plain = analyze([bundle], Options(work_dir=tmp_path, jobs=1, all_records=True))
    monkeypatch.setattr(guard, "WATCHDOG_CPU_SECONDS", 1.0)
    _fault_on(monkeypatch, _first_id(log, 0), _c_hang, "create")
    hung = analyze([bundle], Options(work_dir=tmp_path, jobs=1))
    assert hung.ledger.warnings[-1] == (
        "the evtx parser was killed while reading the logs' first records (to plan selective parsing): "
        "every log decoded whole"
    )
    assert hung.ledger.totals() == plain.ledger.totals()  # nothing left undecoded
    assert _verdicts(hung) == _verdicts(plain)
    [(path, note)] = _extra_warnings(hung, plain)
    assert path.endswith("HV01/System.evtx") and note.startswith("chunk 0 at offset 4096: ")


# --- signals: the parent stopped while its children are stuck ------------------------------------------

HUNG_RUN = """
import itertools, sys
import evtx
from evtxcorr.parse import guard

guard.WATCHDOG_CPU_SECONDS = 3600.0

class Hung:
    def __init__(self, *args, **kwargs):
        any(itertools.repeat(False))  # in C, holding the GIL, deaf to Python signal handlers

evtx.PyEvtxParser = Hung
from evtxcorr.cli import main
sys.argv = ["evtxcorr", *sys.argv[1:]]
main()
"""


def _children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text()
        found.update(int(p) for p in text.split())
    return found


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state in ("Z", "X")


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs /proc (Linux)")
@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_while_children_hang_kills_them_and_cleans_up(
    bundles_dir: Path, tmp_path: Path, signum: int, code: int
) -> None:
    work, out = tmp_path / "work", tmp_path / "out"
    work.mkdir()
    args = [str(bundles_dir / SCENARIO), "--all-records", "--work-dir", str(work), "-o", f"{out}/", "-q"]
    process = subprocess.Popen(
        [sys.executable, "-c", HUNG_RUN, "analyze", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + GIVE_UP_S
        while not (children := _children(process.pid)):  # a child started: it hangs from there on
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the run never started a child"
            time.sleep(0.01)
        assert list(work.iterdir())  # the run's temporary folder exists
        if signum == signal.SIGINT:
            os.killpg(process.pid, signum)  # Ctrl-C: the terminal signals the whole group
        else:
            process.send_signal(signum)
        _, stderr = process.communicate(timeout=GIVE_UP_S)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == code, stderr
    assert stderr.strip().startswith(f"Error: interrupted by {signal.Signals(signum).name}")
    deadline = time.monotonic() + GIVE_UP_S
    while not all(map(_gone, children)):
        assert time.monotonic() < deadline, "a child outlived the run"
        time.sleep(0.01)
    assert list(work.iterdir()) == []
    assert not out.exists() or list(out.iterdir()) == []


def test_a_guarded_child_never_forks_another(log: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_start = guard._Task.start

    def start(task: guard._Task) -> None:
        assert not guard._in_child, "a guarded child started another"
        real_start(task)

    monkeypatch.setattr(guard._Task, "start", start)

    def inner() -> tuple[bool, int]:  # in a guarded child: the parse stays in that process
        entry = InputEntry(path=log.name)
        return guard.available(), len(list(guard.parse_guarded(Source(log, log.name, "evtx"), entry)))

    count = len(_plain(log)[0])
    assert guard.call_guarded(inner, None) == (False, count)
    assert len(_guarded(log)[0]) == count  # from here, a child is started


@pytest.mark.parametrize("all_records", [True, False])
def test_one_worker_reads_every_file_in_turn(
    bundles_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, all_records: bool
) -> None:
    """A fork costs ~10 ms: a run with --jobs 1 forks one worker for all its files (plus one for the
    selective plan's first records), and gives the same answers as in-process parsing."""
    bundle = bundles_dir / SCENARIO
    forks: list[object] = []
    real = guard._Worker.__init__

    def counting(worker: guard._Worker, wanted: object) -> None:
        forks.append(wanted)
        real(worker, wanted)  # type: ignore[arg-type]

    monkeypatch.setattr(guard._Worker, "__init__", counting)
    guarded = analyze([bundle], Options(work_dir=tmp_path, jobs=1, all_records=all_records))
    assert len(forks) == 1 and len(guarded.ledger.entries) == 16
    monkeypatch.setattr(guard, "available", lambda: False)
    plain = analyze([bundle], Options(work_dir=tmp_path, jobs=1, all_records=all_records))
    assert [e.as_dict() for e in guarded.ledger.entries] == [e.as_dict() for e in plain.ledger.entries]
    assert guarded.frame.equals(plain.frame)


def test_a_file_that_shrinks_while_mapped_costs_a_retry(
    log: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A guarded child maps the file's blocks. Cut short while mapped, the file raises SIGBUS where the
    child reads past its new end: the child dies, a fresh one reads the file as it now is, and the
    entry says so. No traceback, nothing lost that the file still holds."""
    from evtxcorr.parse import chunks

    copy = tmp_path / "System.evtx"
    copy.write_bytes(log.read_bytes())
    kept = FILE_HEADER_SIZE + 3 * CHUNK_SIZE
    assert copy.stat().st_size > kept + CHUNK_SIZE
    real_blocks = chunks._blocks

    def shrinking(fh: object) -> object:
        for block in real_blocks(fh):  # type: ignore[arg-type]
            if chunks.MAP_FILES and copy.stat().st_size > kept:
                os.truncate(copy, kept)  # under the mapping just made
            yield block

    monkeypatch.setattr(chunks, "_blocks", shrinking)
    records, entry = _guarded(copy)
    assert any("died (SIGBUS) outside the evtx parser; read again" in w for w in entry.warnings), (
        entry.warnings
    )
    monkeypatch.setattr(chunks, "_blocks", real_blocks)
    plain, plain_entry = _plain(copy)  # the file as it now is, read in this process
    assert [r["record_id"] for r in records] == [r["record_id"] for r in plain]
    assert entry.records == plain_entry.records and entry.chunks == plain_entry.chunks == 3


def test_mapped_and_read_blocks_give_the_same_chunks(
    corpus_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Every chunk slot, its bytes, header and status are the same from a mapped file as from a read one,
    including a file whose size is no multiple of a chunk."""
    from evtxcorr.parse import chunks

    files = sorted(corpus_dir.rglob("*.evtx"))[:25]
    tail = tmp_path / "tail.evtx"  # a short tail after the last chunk: read, not mapped
    tail.write_bytes(files[0].read_bytes() + b"\x01" * 1000)
    for path in [*files, tail]:
        monkeypatch.setattr(chunks, "MAP_FILES", False)
        read = [
            (c.index, c.status, bytes(c.raw), c.header, c.header_crc_ok, c.data_crc_ok)
            for c in chunks.iter_chunks(path)
        ]
        monkeypatch.setattr(chunks, "MAP_FILES", True)
        mapped = list(chunks.iter_chunks(path))
        assert all(
            isinstance(c.raw, memoryview) and isinstance(c.raw.obj, mmap.mmap)
            for c in mapped
            if c.readable and c.status == "ok"
        )
        assert [
            (c.index, c.status, bytes(c.raw), c.header, c.header_crc_ok, c.data_crc_ok) for c in mapped
        ] == read, path
