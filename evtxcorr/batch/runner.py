"""Running cases: each in a process of its own, N at a time here, or one task per case on Dask.

A case runs in a fresh child process (`evtxcorr.batch.child`; forked from a multiprocessing fork server
that has evtxcorr loaded, so a case starts in milliseconds) in a private work folder. That is what
makes a failure or a time limit stop *only* that case and stop it completely: on a time limit the
child's whole process group is killed, and the work folder (with any extracted members) is removed
whatever happened. A crash of the child (a native parser fault, the OOM killer) fails its case, not
the batch. Locally, threads wait on up to N children; on Dask, each task runs the same function on its
worker, so a time limit is enforced there too.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from evtxcorr.batch import child
from evtxcorr.batch.child import JOB_FILE, LOG_FILE, RESULT_FILE, outcome
from evtxcorr.errors import InputError

Job = Mapping[str, Any]
OnResult = Callable[[Job, dict[str, Any]], None]
CONNECT_TIMEOUT_S = 20
WORKER_WAIT_S = 120  # how long a cluster may have no worker before the batch gives up
POLL_S = 1.0  # how often a case on a Dask worker asks whether the batch was interrupted
LOG_TAIL = 2000


class CaseProcess:
    """A running case: a process forked from the fork server, or a `python -m` child process."""

    def __init__(self, work: Path, log: Any) -> None:
        if _use_fork_server():
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload(["__main__", "evtxcorr.batch.preload"])  # on first start
            self._forked: Any = context.Process(
                target=child.run_forked, args=(str(work), os.getpid()), daemon=False
            )
            self._forked.start()
            self._spawned: subprocess.Popen[bytes] | None = None
        else:
            command = [sys.executable, "-m", child.__name__, str(work), str(os.getpid())]
            self._forked = None
            self._spawned = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
            )
        self.pid = int(self._spawned.pid if self._spawned else self._forked.pid)

    def wait(self, timeout: float | None) -> bool:
        """True once the process has ended (False when `timeout` passed first)."""
        if self._spawned is not None:
            try:
                self._spawned.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                return False
            return True
        self._forked.join(timeout)
        return self._forked.exitcode is not None

    @property
    def exitcode(self) -> int | None:
        """The exit code, or minus the number of the signal that ended it."""
        return self._spawned.returncode if self._spawned is not None else self._forked.exitcode

    def kill(self) -> None:
        """Kill the case and everything it started (its process group, a session of its own)."""
        if self.wait(0):
            return
        if not hasattr(os, "killpg") and self._spawned is not None:  # pragma: no cover - Windows
            self._spawned.kill()
            self._spawned.wait()
            return
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except ProcessLookupError:  # forked a moment ago and not yet in its own session
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
        self.wait(None)


def _use_fork_server() -> bool:
    """The fork server forks a case in milliseconds (`python -m` needs about a second of imports);
    multiprocessing forbids it in a daemonic process, which a Dask worker is."""
    return (
        "forkserver" in multiprocessing.get_all_start_methods()
        and not multiprocessing.current_process().daemon
    )


class Children:
    """The case processes running now, so that an interrupted batch can stop them all.

    `should_stop`, when given, is asked every POLL_S seconds while a case runs (a Dask task asks the
    client's stop event this way) and stops the case when it says so.
    """

    def __init__(self, should_stop: Callable[[], bool] | None = None) -> None:
        self._lock = threading.Lock()
        self._running: set[CaseProcess] = set()
        self.stopping = False
        self.should_stop = should_stop

    def start(self, work: Path, log: Any) -> CaseProcess | None:
        """Start the case in `work` (None once the batch is stopping)."""
        with self._lock:
            if self.stopping:
                return None
            proc = CaseProcess(work, log)
            self._running.add(proc)
            return proc

    def finished(self, proc: CaseProcess) -> None:
        with self._lock:
            self._running.discard(proc)

    def stop_all(self) -> None:
        with self._lock:
            self.stopping = True
            running = list(self._running)
        for proc in running:
            proc.kill()

    def wait(self, proc: CaseProcess, timeout: float | None) -> bool:
        """Wait for `proc` to end; False when `timeout` passed first. A stop request kills it."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            step = POLL_S if self.should_stop else None
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                step = left if step is None else min(step, left)
            if proc.wait(step):
                return True
            if self.should_stop and self.should_stop():
                self.stopping = True
                proc.kill()
                return True


def run_case(
    job: Job, *, timeout: float | None = None, work_root: Path | None = None, children: Children | None = None
) -> dict[str, Any]:
    """Run one case in a child process; the result is never an exception (failures are results)."""
    children = children or Children()
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="evtxcorr-case-", dir=work_root))
    try:
        result = _run_in(work, job, timeout, children)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result["seconds"] = round(time.monotonic() - started, 3)
    return result


def _run_in(work: Path, job: Job, timeout: float | None, children: Children) -> dict[str, Any]:
    (work / JOB_FILE).write_text(json.dumps(job), encoding="ascii")  # \u escapes keep odd file names
    with (work / LOG_FILE).open("ab") as log:
        proc = children.start(work, log)
        if proc is None:
            return outcome("failed", "not run: the batch was interrupted")
        try:
            if not children.wait(proc, timeout):
                proc.kill()
                return outcome("failed", f"time limit of {timeout:g} s reached; the case was stopped")
        finally:
            children.finished(proc)
    if children.stopping:
        return outcome("failed", "interrupted before it finished")
    try:
        return dict(json.loads((work / RESULT_FILE).read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return outcome("failed", _died(proc.exitcode), detail=_tail(work / LOG_FILE))


def _died(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"the case's process was killed by {name} (out of memory?) before it finished"
    return f"the case's process ended (exit code {code}) without a result"


def _tail(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")[-LOG_TAIL:]
    except OSError:
        return ""


def run_local(
    jobs: Sequence[Job], on_result: OnResult, *, workers: int, timeout: float | None, work_root: Path
) -> None:
    """Run `jobs` here, `workers` at a time; `on_result` is called in this thread as each one ends.

    On an interruption (Ctrl-C, SIGTERM raised as an exception) every running case is killed, the
    pending ones are dropped, and the exception goes on.
    """
    children = Children()
    pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="evtxcorr-case")
    try:
        futures = {
            pool.submit(run_case, job, timeout=timeout, work_root=work_root, children=children): job
            for job in jobs
        }
        for future in as_completed(futures):
            try:
                result = future.result()
            except Exception as exc:  # run_case itself failed (disk full...): only this case fails
                result = outcome("failed", f"could not run the case: {type(exc).__name__}: {exc}")
            on_result(futures.pop(future), result)  # popped: its reports are not kept in memory
    except BaseException:
        children.stop_all()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def run_on_worker(job: Job, timeout: float | None, work_root: str | None, stop_event: str) -> dict[str, Any]:
    """The Dask task: run one case on this worker (in a child process, as locally) and say where.
    The case is stopped when the client sets the Dask event `stop_event` (the batch was interrupted)."""
    from distributed import Event, get_worker

    children = Children(should_stop=Event(stop_event).is_set)
    result = run_case(
        job, timeout=timeout, work_root=Path(work_root) if work_root else None, children=children
    )
    result["worker"] = get_worker().address
    return result


def run_on_cluster(
    jobs: Sequence[Job], on_result: OnResult, *, scheduler: str, timeout: float | None, work_root: Path | None
) -> None:
    """Send one task per case to the Dask scheduler at `scheduler`; `on_result` as each one ends."""
    try:
        from distributed import Client, Event
        from distributed import as_completed as dask_completed
    except ImportError:
        raise InputError("--scheduler needs Dask: pip install 'evtxcorr[dask]'") from None
    try:
        client = Client(scheduler, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        raise InputError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from None
    batch_id = uuid.uuid4().hex[:8]
    stop_event = f"evtxcorr-stop-{batch_id}"
    root = str(work_root) if work_root else None
    with client:
        try:
            client.wait_for_workers(1, timeout=WORKER_WAIT_S)
        except TimeoutError:
            raise InputError(
                f"no Dask worker joined the scheduler at {scheduler} within {WORKER_WAIT_S} s "
                f"(start one: dask worker {scheduler})"
            ) from None
        futures = {
            client.submit(
                run_on_worker,
                job,
                timeout,
                root,
                stop_event,
                key=f"evtxcorr-case-{batch_id}-{index}",
                pure=False,
            ): job
            for index, job in enumerate(jobs)
        }
        try:
            for future in dask_completed(list(futures), loop=client.loop):
                try:
                    result = future.result()
                except Exception as exc:  # the task or its worker died
                    result = outcome("failed", f"the Dask task failed: {type(exc).__name__}: {exc}")
                on_result(futures.pop(future), result)
                future.release()  # the worker may forget the reports now
        except BaseException:
            Event(stop_event, client=client).set()  # running cases stop within POLL_S
            client.cancel(list(futures))
            raise
