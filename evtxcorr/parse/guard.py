"""Every .evtx parse runs in a forked child process, so that a hang inside pyevtx-rs costs a chunk.

A hang inside one pyevtx-rs call (creating the parser, or one next() on its records) holds the GIL: no
signal handler or thread of the process can stop it. So parse() of a file runs in a child forked from
this process (everything is imported already), which sends its records back in batches over a pipe,
then the file's filled ledger entry; the parent's generator yields them, so callers keep streaming.

In the child only, each chunk's Rust calls run under a CPU-time timer (ITIMER_PROF: user and system
time) whose signal, SIGPROF, keeps its default action: the kernel kills the child, stuck in Rust or
not. Before those calls the child writes the chunk's index to memory shared with the parent
(rust.watch), so when the child dies the parent knows the chunk. It starts the file again in a fresh
child that reads that chunk with python-evtx only (bounded already: pure.py, prescan.py), and names
the chunk in a warning on the file's entry. A child that dies any other way (OOM killer, segfault,
kill -9) is handled the same, its signal named. The records the dead child had sent are not sent
again: parse() is deterministic, and a chunk's records are yielded only once both backends are done
with it, so they all came from earlier chunks, which the new child reads the same way.

Bounds: after MAX_KILLED_CHUNKS chunks killed, the whole file is read with python-evtx; a child that
dies MAX_UNEXPLAINED_DEATHS times outside a Rust call (nothing to ban) costs the rest of that file,
said on its entry. Where a child cannot be forked (no fork or setitimer, in a daemonic process, or
already in a guarded child: nesting is impossible) the file is parsed in this process, unguarded.
"""

from __future__ import annotations

import copy
import gc
import multiprocessing
import signal
from collections import deque
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection, wait
from typing import Any

from evtxcorr.ledger import InputEntry
from evtxcorr.model import Source
from evtxcorr.parse import parse, pure, rust
from evtxcorr.parse.chunks import CHUNK_SIZE, FILE_HEADER_SIZE
from evtxcorr.ruleset.wanted import Wanted
from evtxcorr.signals import deferred, worker_defaults

WATCHDOG_CPU_SECONDS = 30.0  # per chunk's Rust calls (3x rust.CHUNK_CPU_SECONDS, checked between records)
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


def _share(record: dict, shared: dict[object, object]) -> dict:
    """The record with its equal strings (and tuples of them: data_names) made one object across the
    batch: pickle sends each once, the parent builds each once (a third less CPU there, less memory)."""
    for key, value in record.items():
        kind = type(value)
        if kind is str or (kind is tuple and key == "data_names"):
            record[key] = shared.setdefault(value, value)
    return record


def _child(
    conn: Connection,
    where: Any,
    source: Source,
    entry: InputEntry,
    options: dict[str, Any],
    skip: int,
    progress: bool,
) -> None:
    """Parse in the child; send ('records', [...]) batches (after the first `skip` records), progress,
    then ('done', entry) or ('raise', exception)."""
    _become_child(where)

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
    except BaseException as exc:  # noqa: BLE001 - raised in the parent, as an in-process parse would
        try:
            conn.send(("raise", exc))
        except Exception:  # noqa: BLE001 - an exception that does not pickle
            conn.send(("raise", RuntimeError(f"{type(exc).__name__}: {exc}")))
    finally:
        conn.close()


# --- in the parent -----------------------------------------------------------------------------------


def _signal_name(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            return signal.Signals(-exitcode).name
        except ValueError:
            return f"signal {-exitcode}"
    return f"exit code {exitcode}"


class _Task:
    """One file parsed in guarded children: started again in a fresh child after each death."""

    def __init__(
        self,
        source: Source,
        entry: InputEntry,
        backend: str,
        wanted: Wanted | None,
        on_progress: Callable[[int], None] | None = None,
    ) -> None:
        self.source, self.entry, self.backend, self.wanted = source, entry, backend, wanted
        self.initial = copy.deepcopy(entry)  # what each child starts from (progress updates `entry`)
        self.on_progress = on_progress
        self.banned: set[int] = set()
        self.everything = False  # read the whole file with python-evtx
        self.notes: list[str] = []  # warnings for the entry, once the parse is done
        self.sent = 0  # records received from children (a new child does not send them again)
        self.unexplained: list[str] = []
        self.finished = False
        self.process: Any = None
        self.conn: Connection | None = None

    def start(self) -> None:
        context = multiprocessing.get_context("fork")
        self.where = context.RawArray("q", 2)  # armed (0/1), chunk index: shared with the child
        receive, send = context.Pipe(duplex=False)
        options: dict[str, Any] = {
            "backend": pure.NAME if self.everything else self.backend,
            "wanted": self.wanted,
            "rust_banned": _Everything() if self.everything else frozenset(self.banned),
        }
        self.process = context.Process(
            target=_child,
            args=(
                send,
                self.where,
                self.source,
                self.initial,
                options,
                self.sent,
                self.on_progress is not None,
            ),
            name="evtxcorr-parse",
            daemon=True,
        )
        with deferred():  # a signal inside fork's Python callbacks would be lost: raised after it
            self.process.start()
        send.close()
        self.conn = receive

    def step(self) -> list[dict]:
        """Take one message from the child (blocking); the records it carries."""
        assert self.conn is not None
        try:
            message = self.conn.recv()
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
        self._reap()
        if kind == "raise":
            raise message[1]
        vars(self.entry).update(vars(message[1]))  # the child's accounting, on the parent's entry
        for note in self.notes:
            self.entry.warn(note)
        self.finished = True
        return []

    def _died(self) -> None:
        """The child ended without its entry: ban the chunk it died in and start again, or give up."""
        in_rust, index = self.where[0], self.where[1]
        exitcode = self._reap()
        cause = _signal_name(exitcode)
        if in_rust and not self.everything:
            offset = FILE_HEADER_SIZE + index * CHUNK_SIZE
            if exitcode == -WATCHDOG_SIGNAL:  # type: ignore[operator]
                why = f"did not return within {WATCHDOG_CPU_SECONDS:g} s of CPU (killed)"
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

    def _reap(self) -> int | None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None
        self.process.join()
        return self.process.exitcode

    def stop(self) -> None:
        """Kill the child, if one is running (the caller stopped early, or was interrupted)."""
        if self.conn is not None:
            self.conn.close()
            self.conn = None
        if self.process is not None and self.process.exitcode is None:
            self.process.kill()
            self.process.join()


def parse_guarded(
    source: Source,
    entry: InputEntry,
    *,
    backend: str = rust.NAME,
    wanted: Wanted | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> Iterator[dict]:
    """parse() of one .evtx source in guarded children (module docstring): the same records and entry,
    plus a warning per chunk the evtx parser was killed on. The entry is filled when the iterator ends
    (while it runs, records and chunk counts are kept up to date for progress)."""
    if not available():
        yield from parse(source, entry, backend=backend, wanted=wanted, on_progress=on_progress)
        return
    task = _Task(source, entry, backend, wanted, on_progress)
    try:
        task.start()
        while not task.finished:
            yield from task.step()
    finally:
        task.stop()


def parse_many(
    jobs: list[tuple[Source, InputEntry]], backend: str, wanted: Wanted | None, workers: int
) -> Iterator[tuple[Source, list[dict], InputEntry]]:
    """(source, records, entry filled) for each job, in the order given, parsed in at most `workers`
    guarded children at once, largest files started first (`jobs` entries are filled in place)."""
    if not available():
        for source, entry in jobs:
            yield source, list(parse(source, entry, backend=backend, wanted=wanted)), entry
        return
    pending = deque(sorted(range(len(jobs)), key=lambda i: -source_size(jobs[i][0])))
    tasks: dict[int, _Task] = {}
    records: dict[int, list[dict]] = {}
    running: dict[int, _Task] = {}
    try:
        for index, (source, entry) in enumerate(jobs):
            while not (index in tasks and tasks[index].finished):
                while pending and len(running) < max(1, workers):
                    started = pending.popleft()
                    tasks[started] = running[started] = _Task(*jobs[started], backend, wanted)
                    records[started] = []
                    running[started].start()
                by_conn = {task.conn: number for number, task in running.items()}
                for conn in wait(list(by_conn)):
                    number = by_conn[conn]  # type: ignore[index]
                    records[number] += running[number].step()
                    if running[number].finished:
                        del running[number]
            yield source, records.pop(index), entry
    finally:
        for task in running.values():
            task.stop()


def source_size(source: Source) -> int:
    """The file's size in bytes (0 when it cannot be read)."""
    try:
        return source.path.stat().st_size
    except OSError:
        return 0


def call_guarded(function: Callable[[], Any], default: Any) -> Any:
    """function() in a guarded child, every Rust call under the watchdog; `default` if the child dies
    (or raises). In this process when no child can be forked."""
    if not available():
        return function()
    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)

    def run() -> None:
        _become_child([0, 0])
        try:
            send.send(("done", function()))
        except BaseException as exc:  # noqa: BLE001 - the parent takes the default
            send.send(("raise", RuntimeError(f"{type(exc).__name__}: {exc}")))

    process = context.Process(target=run, name="evtxcorr-guarded", daemon=True)
    with deferred():
        process.start()
    send.close()
    try:
        kind, value = receive.recv()
    except (EOFError, OSError):
        kind, value = "died", None
    except BaseException:  # interrupted: the child goes too
        process.kill()
        raise
    finally:
        receive.close()
        process.join()
    return value if kind == "done" else default
