"""Every .evtx parse runs in a forked child process, so that a hang inside pyevtx-rs costs a chunk.

A hang inside one pyevtx-rs call (creating the parser, or one next() on its records) holds the GIL: no
signal handler or thread of the process can stop it. So parse() of a file runs in a worker, a child
forked from this process (everything is imported already) that reads file after file for one pass
(Workers: a fork costs ~10 ms, and bundles hold hundreds of small logs). It sends each file's records
back in batches over a pipe, then the filled ledger entry; the parent's generator yields them, so
callers keep streaming.

In the child only, each chunk's Rust calls run under a CPU-time timer (ITIMER_PROF: user and system
time) whose signal, SIGPROF, keeps its default action: the kernel kills the child, stuck in Rust or
not. Before those calls the child writes the chunk's index to memory shared with the parent
(rust.watch), so when the child dies the parent knows the chunk. It starts the file again in a fresh
child that reads that chunk with python-evtx only (bounded already: pure.py, prescan.py), and names
the chunk in a warning on the file's entry. A child that dies any other way (OOM killer, segfault,
kill -9) is handled the same, its signal named. A Rust call that hangs without using CPU (a deadlock)
never meets that timer: the parent, which looks every POLL_SECONDS while it waits, kills a child it
finds in one chunk's Rust calls for STUCK_WALL_SECONDS, with the same outcome. The records the dead child had sent are not sent
again: parse() is deterministic, and a chunk's records are yielded only once both backends are done
with it, so they all came from earlier chunks, which the new child reads the same way.

Bounds: after MAX_KILLED_CHUNKS chunks killed, the whole file is read with python-evtx; a child that
dies MAX_UNEXPLAINED_DEATHS times outside a Rust call (nothing to ban) costs the rest of that file,
said on its entry. Where a child cannot be forked (no fork or setitimer, in a daemonic process, or
already in a guarded child: nesting is impossible) the file is parsed in this process, unguarded.
"""

from __future__ import annotations

import copy
import faulthandler
import gc
import multiprocessing
import signal
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection, wait
from typing import TYPE_CHECKING, Any

from evtxcorr.ledger import InputEntry
from evtxcorr.model import Source
from evtxcorr.parse import PURE, chunks, parse, rust
from evtxcorr.parse.chunks import CHUNK_SIZE, FILE_HEADER_SIZE
from evtxcorr.signals import deferred, worker_defaults

if TYPE_CHECKING:
    from evtxcorr.ruleset.wanted import Wanted  # (pySigma: analyze imports it once planning has started)

WATCHDOG_CPU_SECONDS = 30.0  # per chunk's Rust calls (3x rust.CHUNK_CPU_SECONDS, checked between records)
# A Rust call that spends no CPU (a deadlock: pyevtx-rs gets the chunk in memory, one thread, so none is
# known) never meets the CPU watchdog: the parent kills a child found in one chunk's Rust calls this long.
STUCK_WALL_SECONDS = 600.0  # generous: a child on an overloaded host may get little CPU
POLL_SECONDS = 1.0  # how often the parent looks, while it waits for a child
MAX_KILLED_CHUNKS = 5  # chunks banned from Rust before the whole file is read with python-evtx
MAX_UNEXPLAINED_DEATHS = 2  # deaths outside a Rust call tolerated per file (the next costs the rest)
BATCH = 2000  # records per message from the child
WATCHDOG_SIGNAL = signal.SIGPROF if hasattr(signal, "SIGPROF") else None

_in_child = False  # True in a guarded child: it parses in-process, never forks another


class _Everything:
    """Every chunk index (rust_banned when the file is read with python-evtx only)."""

    def __contains__(self, _index: object) -> bool:
        return True


def available() -> bool:
    """Can this process run a parse in a guarded child?"""
    return (
        not _in_child
        and WATCHDOG_SIGNAL is not None
        and hasattr(signal, "setitimer")
        and "fork" in multiprocessing.get_all_start_methods()
        and not multiprocessing.current_process().daemon
    )


# --- in the child ------------------------------------------------------------------------------------


def _arm(where: Any, index: int | None) -> None:
    """rust.watch in a guarded child: note the chunk and arm the watchdog, or (None) disarm it."""
    if index is None:
        signal.setitimer(signal.ITIMER_PROF, 0)
        where[0] = 0
        return
    where[1] = index
    where[0] = 1
    signal.setitimer(signal.ITIMER_PROF, WATCHDOG_CPU_SECONDS)


def _become_child(where: Any) -> None:
    """First thing in a guarded child: no nesting, the parent's signals, the watchdog ready."""
    global _in_child
    _in_child = True
    # The parent's objects (all its records, with --all-records) are left out of this process's garbage
    # collections: traversing them would cost CPU and copy every page of the parent's heap.
    gc.freeze()
    worker_defaults()  # SIGINT ignored (the parent decides), SIGTERM kills
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, signal.SIG_DFL)
    assert WATCHDOG_SIGNAL is not None
    signal.signal(WATCHDOG_SIGNAL, signal.SIG_DFL)  # the kernel kills: nothing runs in this process
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {WATCHDOG_SIGNAL})
    rust.watch = lambda index: _arm(where, index)
    chunks.MAP_FILES = True  # a file shrinking under the mapping (SIGBUS) kills this child only
    faulthandler.disable()  # a death here is the parent's to report (the entry's warning), not a dump


def _share(record: dict, shared: dict[object, object]) -> dict:
    """The record with its equal strings (and tuples of them: data_names) made one object across the
    batch: pickle sends each once, the parent builds each once (a third less CPU there, less memory)."""
    for key, value in record.items():
        kind = type(value)
        if kind is str or (kind is tuple and key == "data_names"):
            record[key] = shared.setdefault(value, value)
    return record


def _serve(conn: Connection, where: Any, wanted: Wanted | None) -> None:
    """A worker: parse one file per request (source, entry, options, skip, progress) until the parent
    closes the pipe. `wanted` is the one the worker was forked with (requests say whether to use it)."""
    _become_child(where)
    while True:
        try:
            source, entry, options, skip, progress = conn.recv()
        except (EOFError, OSError):
            return
        options["wanted"] = wanted if options.pop("selective") else None
        _parse_one(conn, source, entry, options, skip, progress)


def _parse_one(
    conn: Connection, source: Source, entry: InputEntry, options: dict[str, Any], skip: int, progress: bool
) -> None:
    """Send ('records', [...]) batches (after the first `skip` records), progress, then ('done', entry)
    or ('raise', exception)."""

    def tick(scanned: int) -> None:
        conn.send(("progress", scanned, entry.records, entry.chunks, entry.chunks_skipped))

    try:
        batch: list[dict] = []
        records = parse(source, entry, **options, on_progress=tick if progress else None)
        shared: dict[object, object] = {}
        for count, record in enumerate(records, start=1):
            if count > skip:
                batch.append(_share(record, shared))
                if len(batch) >= BATCH:
                    conn.send(("records", batch))
                    batch, shared = [], {}
        if batch:
            conn.send(("records", batch))
        conn.send(("done", entry))
    except Exception as exc:  # noqa: BLE001 - raised in the parent, as an in-process parse would
        try:
            conn.send(("raise", exc))
        except Exception:  # noqa: BLE001 - an exception that does not pickle
            conn.send(("raise", RuntimeError(f"{type(exc).__name__}: {exc}")))


# --- in the parent -----------------------------------------------------------------------------------


def _signal_name(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            return signal.Signals(-exitcode).name
        except ValueError:
            return f"signal {-exitcode}"
    return f"exit code {exitcode}"


class _Watch:
    """Tells when a child has been in one chunk's Rust calls (its `where`) for STUCK_WALL_SECONDS."""

    def __init__(self, where: Any) -> None:
        self.where = where
        self.seen: tuple[int, float] | None = None  # (chunk, first seen there)

    def stuck(self) -> bool:
        in_rust, index, now = self.where[0], self.where[1], time.monotonic()
        if not in_rust:
            self.seen = None
        elif self.seen is None or self.seen[0] != index:
            self.seen = (index, now)
        else:
            return now - self.seen[1] >= STUCK_WALL_SECONDS
        return False


class _Worker:
    """A forked child serving parse requests, reused file after file (a fork costs ~10 ms)."""

    def __init__(self, wanted: Wanted | None) -> None:
        context = multiprocessing.get_context("fork")
        self.wanted = wanted
        self.where = context.RawArray("q", 2)  # armed (0/1), chunk index: shared with the child
        self.conn, theirs = context.Pipe()
        self.process = context.Process(
            target=_serve, args=(theirs, self.where, wanted), name="evtxcorr-parse", daemon=True
        )
        with deferred():  # a signal inside fork's Python callbacks would be lost: raised after it
            self.process.start()
        theirs.close()

    def reap(self) -> int | None:
        """Wait for the (dead or dying) child; its exit code."""
        self.conn.close()
        self.process.join()
        return self.process.exitcode

    def kill(self) -> None:
        self.conn.close()
        if self.process.exitcode is None:
            self.process.kill()
        self.process.join()


class Workers:
    """The guarded children of one reading pass (read_all, parse_many): idle ones are reused; all are
    killed on close(). Forked when first needed, so they see the process as it is then."""

    def __init__(self, wanted: Wanted | None = None) -> None:
        self.wanted = wanted  # what new workers are forked with, unless a request needs another
        self.idle: list[_Worker] = []
        self.busy: set[_Worker] = set()

    def take(self, wanted: Wanted | None) -> _Worker:
        """An idle worker that can serve `wanted`, else a new one."""
        for worker in self.idle:
            if wanted is None or worker.wanted is wanted:
                self.idle.remove(worker)
                break
        else:
            worker = _Worker(self.wanted if wanted is None else wanted)
        self.busy.add(worker)
        return worker

    def give_back(self, worker: _Worker) -> None:
        self.busy.discard(worker)
        self.idle.append(worker)

    def drop(self, worker: _Worker) -> int | None:
        """A worker that died: reaped, forgotten; its exit code."""
        self.busy.discard(worker)
        return worker.reap()

    def kill(self, worker: _Worker) -> None:
        self.busy.discard(worker)
        worker.kill()

    def close(self) -> None:
        for worker in [*self.busy, *self.idle]:
            worker.kill()
        self.busy.clear()
        self.idle.clear()

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


class _Task:
    """One file parsed by guarded workers: started again in a fresh one after each death."""

    def __init__(
        self,
        workers: Workers,
        source: Source,
        entry: InputEntry,
        backend: str,
        wanted: Wanted | None,
        on_progress: Callable[[int], None] | None = None,
    ) -> None:
        self.workers = workers
        self.source, self.entry, self.backend, self.wanted = source, entry, backend, wanted
        self.initial = copy.deepcopy(entry)  # what each child starts from (progress updates `entry`)
        self.on_progress = on_progress
        self.banned: set[int] = set()
        self.everything = False  # read the whole file with python-evtx
        self.notes: list[str] = []  # warnings for the entry, once the parse is done
        self.sent = 0  # records received from children (a new child does not send them again)
        self.unexplained: list[str] = []
        self.finished = False
        self.worker: _Worker | None = None
        self.watch: _Watch | None = None
        self.stuck = False  # killed by check_stuck()

    @property
    def conn(self) -> Connection:
        assert self.worker is not None
        return self.worker.conn

    def start(self) -> None:
        options: dict[str, Any] = {
            "backend": PURE if self.everything else self.backend,
            "selective": self.wanted is not None,
            "rust_banned": _Everything() if self.everything else frozenset(self.banned),
        }
        request = (self.source, self.initial, options, self.sent, self.on_progress is not None)
        for _attempt in range(3):  # an idle worker may have died meanwhile (OOM killer): take another
            self.worker = self.workers.take(self.wanted)
            self.watch = _Watch(self.worker.where)
            try:
                self.worker.conn.send(request)
                return
            except OSError:
                self.workers.drop(self.worker)
        raise RuntimeError("no parser process could be started")

    def check_stuck(self) -> None:
        """Kill the child if it has been in one chunk's Rust calls for STUCK_WALL_SECONDS (_died then
        bans that chunk, as for the CPU watchdog)."""
        if self.worker is not None and self.watch is not None and self.watch.stuck():
            self.stuck = True
            self.worker.process.kill()

    def step(self) -> list[dict]:
        """Take one message from the child (blocking, but watching for a stuck child); the records it
        carries."""
        assert self.worker is not None
        try:
            while not self.worker.conn.poll(POLL_SECONDS):
                self.check_stuck()
            message = self.worker.conn.recv()
        except (EOFError, OSError):
            self._died()
            return []
        kind = message[0]
        if kind == "records":
            self.sent += len(message[1])
            return message[1]
        if kind == "progress":
            if self.on_progress is not None:
                _scanned, self.entry.records, self.entry.chunks, self.entry.chunks_skipped = message[1:]
                self.entry.records = max(self.entry.records, self.sent)
                self.on_progress(_scanned)
            return []
        self.workers.give_back(self.worker)
        self.worker = None
        if kind == "raise":
            self.finished = True
            raise message[1]
        vars(self.entry).update(vars(message[1]))  # the child's accounting, on the parent's entry
        for note in self.notes:
            self.entry.warn(note)
        self.finished = True
        return []

    def _died(self) -> None:
        """The child ended without its entry: ban the chunk it died in and start again, or give up."""
        assert self.worker is not None
        in_rust, index = self.worker.where[0], self.worker.where[1]
        exitcode = self.workers.drop(self.worker)
        self.worker = None
        stuck, self.stuck = self.stuck, False
        cause = _signal_name(exitcode)
        if in_rust and not self.everything:
            offset = FILE_HEADER_SIZE + index * CHUNK_SIZE
            if exitcode == -WATCHDOG_SIGNAL:  # type: ignore[operator]
                why = f"did not return within {WATCHDOG_CPU_SECONDS:g} s of CPU (killed)"
            elif stuck:
                why = f"made no progress for {STUCK_WALL_SECONDS:g} s without using CPU (killed)"
            else:
                why = f"was killed ({cause})"
            self.notes.append(
                f"chunk {index} at offset {offset}: the evtx parser {why}; read with python-evtx"
            )
            self.banned.add(index)
            if len(self.banned) >= MAX_KILLED_CHUNKS:
                self.everything = True
                self.notes.append(
                    f"the evtx parser was killed on {len(self.banned)} chunks: the whole file read with "
                    "python-evtx"
                )
            self.start()
            return
        self.unexplained.append(cause)
        if len(self.unexplained) <= MAX_UNEXPLAINED_DEATHS:
            self.notes.append(f"the process reading it died ({cause}) outside the evtx parser; read again")
            self.start()
            return
        self._give_up()

    def _give_up(self) -> None:
        """The rest of the file is not read: the records received stand, and the entry says so."""
        entry = self.entry
        entry.format = "evtx"
        entry.records = self.sent
        reason = (
            f"the process reading it died {len(self.unexplained)} times ({', '.join(self.unexplained)}); "
            f"{self.sent} record(s) read before that, the rest of the file not read"
        )
        for note in self.notes:
            entry.warn(note)
        entry.warn(reason)
        if self.sent:
            entry.degrade(reason)
        else:
            entry.skip(reason)
        self.finished = True

    def stop(self) -> None:
        """Kill the worker if it is still on this file (the caller stopped early, or was interrupted)."""
        if self.worker is not None:
            self.workers.kill(self.worker)
            self.worker = None


def parse_guarded(
    source: Source,
    entry: InputEntry,
    *,
    backend: str = rust.NAME,
    wanted: Wanted | None = None,
    on_progress: Callable[[int], None] | None = None,
    workers: Workers | None = None,
) -> Iterator[dict]:
    """parse() of one .evtx source in a guarded worker (module docstring): the same records and entry,
    plus a warning per chunk the evtx parser was killed on. `workers`: reuse those (else one is forked
    for this file). The entry is filled when the iterator ends (while it runs, records and chunk
    counts are kept up to date for progress)."""
    if not available():
        yield from parse(source, entry, backend=backend, wanted=wanted, on_progress=on_progress)
        return
    own = workers is None
    pool = Workers() if workers is None else workers
    task = _Task(pool, source, entry, backend, wanted, on_progress)
    try:
        task.start()
        while not task.finished:
            yield from task.step()
    finally:
        task.stop()
        if own:
            pool.close()


def parse_many(
    jobs: list[tuple[Source, InputEntry]], backend: str, wanted: Wanted | None, workers: int
) -> Iterator[tuple[Source, list[dict], InputEntry]]:
    """(source, records, entry filled) for each job, in the order given, parsed by at most `workers`
    guarded workers at once, largest files started first (`jobs` entries are filled in place). The
    first files start before this returns: the caller may do other work (imports) meanwhile."""
    if not available():
        return (
            (source, list(parse(source, entry, backend=backend, wanted=wanted)), entry)
            for source, entry in jobs
        )
    pool = Workers(wanted)
    pending = deque(sorted(range(len(jobs)), key=lambda i: -jobs[i][0].size()))
    tasks: dict[int, _Task] = {}
    running: dict[int, _Task] = {}

    def start_more() -> None:
        while pending and len(running) < max(1, workers):
            started = pending.popleft()
            tasks[started] = running[started] = _Task(pool, *jobs[started], backend, wanted)
            running[started].start()

    try:
        start_more()
    except BaseException:
        pool.close()
        raise
    results = _in_order(jobs, pool, tasks, running, start_more)
    weakref.finalize(results, pool.close)  # also when dropped before its first next()
    return results


def _in_order(
    jobs: list[tuple[Source, InputEntry]],
    pool: Workers,
    tasks: dict[int, _Task],
    running: dict[int, _Task],
    start_more: Callable[[], None],
) -> Iterator[tuple[Source, list[dict], InputEntry]]:
    records: dict[int, list[dict]] = {}
    try:
        for index, (source, entry) in enumerate(jobs):
            while not (index in tasks and tasks[index].finished):
                start_more()
                by_conn = {task.conn: number for number, task in running.items()}
                ready = wait(list(by_conn), timeout=POLL_SECONDS)
                if not ready:
                    for task in running.values():
                        task.check_stuck()
                for conn in ready:
                    number = by_conn[conn]  # type: ignore[index]
                    records.setdefault(number, []).extend(running[number].step())
                    if running[number].finished:
                        del running[number]
            yield source, records.pop(index, []), entry
    finally:
        pool.close()


def call_guarded(function: Callable[[], Any], default: Any) -> Any:
    """function() in a guarded child, every Rust call under the watchdog; `default` if the child dies
    (or raises). In this process when no child can be forked."""
    return Pending(function, default).result()


class Pending:
    """call_guarded() started in the background, so the caller goes on while the child works: result()
    waits for it (once); cancel() kills the child."""

    def __init__(self, function: Callable[[], Any], default: Any) -> None:
        self.default = default
        self.process: Any = None
        self.value: tuple[str, Any] | None = None
        if not available():
            self.value = ("done", function())
            return
        context = multiprocessing.get_context("fork")
        self.receive, send = context.Pipe(duplex=False)
        self.where = context.RawArray("q", 2)

        def run() -> None:
            _become_child(self.where)
            try:
                send.send(("done", function()))
            except BaseException as exc:  # noqa: BLE001 - the parent takes the default
                send.send(("raise", RuntimeError(f"{type(exc).__name__}: {exc}")))

        self.process = context.Process(target=run, name="evtxcorr-guarded", daemon=True)
        with deferred():
            self.process.start()
        send.close()

    def result(self) -> Any:
        if self.value is None:
            watch = _Watch(self.where)
            try:
                while not self.receive.poll(POLL_SECONDS):
                    if watch.stuck():
                        self.process.kill()
                self.value = self.receive.recv()
            except (EOFError, OSError):
                self.value = ("died", None)
            except BaseException:  # interrupted: the child goes too
                self.process.kill()
                raise
            finally:
                self.receive.close()
                self.process.join()
        kind, value = self.value
        return value if kind == "done" else self.default

    def cancel(self) -> None:
        if self.value is None and self.process is not None:
            self.value = ("cancelled", None)
            self.receive.close()
            self.process.kill()
            self.process.join()
