"""SIGINT and SIGTERM become an exception in the main thread, so every `with` block and `finally`
clause on the way out runs (temporary folders are removed, worker pools shut down, half-written
reports deleted) and the process exits 128 + the signal number: 130 for Ctrl-C, 143 for SIGTERM.

`Interrupted` derives from BaseException, like KeyboardInterrupt, so no `except Exception` swallows
it. The first signal raises it; a signal inside `deferred()` waits for the block to end; a second
signal while the first is being cleaned up ends the process at once (what a user pressing Ctrl-C
twice asks for). Worker processes should call `worker_defaults()` first, so that only the main
process decides what a signal means.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

# SIGHUP (the terminal went away) where the platform has it: exit code 129.
HANDLED = (signal.SIGINT, signal.SIGTERM, *((signal.SIGHUP,) if hasattr(signal, "SIGHUP") else ()))


class Interrupted(BaseException):
    """The run was stopped by a signal; `exit_code` is what the process should exit with."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(f"interrupted by {signal.Signals(signum).name}")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


@dataclass
class _State:
    installed: int = 0  # nesting depth of interruptible()
    deferring: int = 0  # nesting depth of deferred()
    pending: int | None = None  # a signal received inside deferred()
    raised: bool = False  # Interrupted was raised already: we are cleaning up


_state = _State()


def _handler(signum: int, frame: FrameType | None) -> None:
    if _state.raised:  # second signal during cleanup: stop now, as the default action would
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return
    if _state.deferring:
        _state.pending = signum
        return
    _state.raised = True
    raise Interrupted(signum)


@contextmanager
def interruptible() -> Iterator[None]:
    """Within the block, SIGINT and SIGTERM raise Interrupted (main thread only: elsewhere Python
    cannot install handlers and this is a no-op)."""
    if threading.current_thread() is not threading.main_thread() or _state.installed:
        yield
        return
    previous = {signum: signal.signal(signum, _handler) for signum in HANDLED}
    _state.installed += 1
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        _state.installed -= 1
        _state.raised, _state.pending, _state.deferring = False, None, 0


@contextmanager
def deferred() -> Iterator[None]:
    """A block a signal must not cut in half (renaming finished reports into place): a signal that
    arrives inside it is raised as Interrupted when the block ends."""
    _state.deferring += 1
    try:
        yield
    finally:
        _state.deferring -= 1
    if _state.deferring == 0 and _state.pending is not None and not _state.raised:
        signum, _state.pending = _state.pending, None
        _state.raised = True
        raise Interrupted(signum)


@contextmanager
def temporary_folder(prefix: str, parent: Path | None = None) -> Iterator[Path]:
    """A private temporary folder (like tempfile.TemporaryDirectory) whose removal a signal cannot cut
    short: a signal arriving while it is removed is raised once it is gone."""
    folder = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    try:
        yield folder
    finally:
        with deferred():
            shutil.rmtree(folder, ignore_errors=True)


def worker_defaults() -> None:
    """For worker processes (a pool's initializer): ignore SIGINT, which a terminal sends to the whole
    process group, and die on SIGTERM; the main process turns its own signal into Interrupted and
    shuts the pool down."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
