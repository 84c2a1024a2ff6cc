"""Rust `evtx` backend (pyevtx-rs): the only module that imports `evtx`.

Each chunk is parsed on its own: a valid one-chunk file (chunks.mini_file) goes to PyEvtxParser.
That gives every record its chunk, lets a caller skip chunks before parsing, and keeps a damaged
chunk from stopping the file. The parser stops at the first bad record of a chunk unless it is asked
again, so errors are caught on next() and iteration continues.

A Rust panic surfaces as pyo3's PanicException, which derives from BaseException: it is caught here
and ends the chunk (the parser's state is not trusted after it), as does CHUNK_CPU_SECONDS of this
thread's CPU time spent on one chunk. Either way the records not read are left to the other backend.
A hang inside one call cannot be caught here (it holds the GIL): in a guarded child process (guard.py)
`watch` is set, and each chunk's calls run under a CPU-time watchdog that kills the process.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import evtx

from evtxcorr.parse.chunks import BoundExceeded, mini_file
from evtxcorr.parse.normalise import xml_to_record

NAME = "evtx"
MAX_CONSECUTIVE_ERRORS = 1000  # a parser that keeps raising without progress is given up on
CHUNK_CPU_SECONDS = 10.0  # per chunk (this thread's CPU time, checked between records)
# Set in a guarded child only (guard.py): called with a chunk's index before its Rust calls (note where
# the process is, arm the watchdog) and with None once they are over.
watch: Callable[[int | None], None] | None = None


class RustPanic(Exception):
    """A panic inside pyevtx-rs (pyo3's PanicException), as an ordinary exception."""


def is_panic(exc: BaseException) -> bool:
    """True for pyo3's PanicException (a BaseException, so `except Exception` lets it through)."""
    return type(exc).__name__ == "PanicException"


def _records(parser: object, deadline: float | None = None) -> Iterator[dict | Exception]:
    errors = 0
    calls = 0
    try:
        iterator = parser.records()  # type: ignore[attr-defined]
        while errors < MAX_CONSECUTIVE_ERRORS:
            # the clock is a system call: read it before the first record, then every 16th
            if deadline is not None and not calls % 16 and time.thread_time() >= deadline:
                yield BoundExceeded(f"chunk time bound reached ({CHUNK_CPU_SECONDS:g} s of CPU)")
                return
            calls += 1
            try:
                item = next(iterator)
            except StopIteration:
                return
            except Exception as exc:  # noqa: BLE001 - pyevtx-rs raises RuntimeError and friends
                errors += 1
                yield exc
                continue
            errors = 0
            yield item
    except BaseException as exc:
        if not is_panic(exc):
            raise
        yield RustPanic(f"evtx parser panicked: {exc}")


def _convert(item: dict) -> tuple[int, dict | Exception]:
    """(record id, record dict or the normalisation error) of one pyevtx-rs item."""
    record_id = int(item["event_record_id"])
    try:
        return record_id, xml_to_record(item["data"], written=item.get("timestamp") or None)
    except Exception as exc:  # noqa: BLE001 - damaged XML text from a damaged record
        return record_id, exc


def parse_chunk(
    chunk_data: bytes, wanted_ids: set[int] | None = None, index: int = -1
) -> Iterator[tuple[int, dict | Exception | None] | Exception]:
    """(record id, record dict or error) per record of one chunk; a bare Exception for a record the
    parser failed on before knowing its id. With `wanted_ids`, records whose id is not in it are
    yielded as (id, None), unconverted (turning XML into a dict is most of the cost). `index`: the
    chunk's, for the watchdog of a guarded child (`watch`)."""
    armed = watch
    if armed is not None:
        armed(index)
    try:
        yield from _parse_chunk(chunk_data, wanted_ids)
    finally:
        if armed is not None:
            armed(None)


def _parse_chunk(
    chunk_data: bytes, wanted_ids: set[int] | None
) -> Iterator[tuple[int, dict | Exception | None] | Exception]:
    deadline = time.thread_time() + CHUNK_CPU_SECONDS
    try:
        parser = evtx.PyEvtxParser(
            io.BytesIO(mini_file(chunk_data)), number_of_threads=1, indent=False, validate_checksums=False
        )
    except BaseException as exc:
        if not is_panic(exc):
            raise
        yield RustPanic(f"evtx parser panicked: {exc}")
        return
    for item in _records(parser, deadline):
        if isinstance(item, Exception):
            yield item
        elif wanted_ids is not None and int(item["event_record_id"]) not in wanted_ids:
            yield int(item["event_record_id"]), None
        else:
            yield _convert(item)


def parse_file(path: Path) -> Iterator[dict | Exception]:
    """Whole-file parse (no chunk provenance): used only to measure the per-chunk overhead."""
    parser = evtx.PyEvtxParser(str(path), number_of_threads=1, indent=False, validate_checksums=False)
    for item in _records(parser):
        yield item if isinstance(item, Exception) else _convert(item)[1]
