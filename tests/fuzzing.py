"""The EVTX fuzz harness behind scripts/fuzz: structure-aware mutations of real chunks and forged
logs, fed to parse() through both backends, checked for what parse() promises.

Seeds: the first chunk of a few files of the shared corpus of real logs, and small forged logs (a
handful of events per channel, so the slow python-evtx backend stays quick). Mutations aim at the
structures a parser trusts: file header fields, chunk header fields, the string and template offset
tables, template definitions (their `next` pointers), record sizes, and BinXML bytes (tokens,
template offsets, substitution descriptors), plus plain bit flips and truncation.

Findings: an exception escaping parse() (it promises none, PanicException included), a record
without the agreed fields or with a naive time, an entry in no known status, or an input that takes
longer than `timeout` seconds (a hang). A hang inside pyevtx-rs holds the GIL, so neither the alarm
nor any Python thread can stop it: faulthandler's C watchdog ends the process at twice the timeout,
and with --out the input being parsed is always in OUT/last-input.evtx for that case. Engines:
atheris (coverage-guided, where it installs) or a seeded loop of our mutations, deterministic for a
given seed (what CI runs).

    scripts/fuzz --runs 200 --seed 1           # bounded, deterministic (CI runs a short one)
    scripts/fuzz --seconds 600 --out /tmp/fz   # open-ended, findings saved under /tmp/fz
    scripts/fuzz --atheris -- -max_total_time=600   # coverage-guided with atheris (libFuzzer flags
                                                    # after --; it stops at the first finding)
    scripts/fuzz --replay tests/fixtures/fuzz  # re-run saved inputs
"""

from __future__ import annotations

import argparse
import faulthandler
import hashlib
import logging
import random
import signal
import struct
import sys
import tempfile
import time
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script: import evtxcorr from this checkout
    sys.path.insert(0, str(REPO))

from evtxcorr.ledger import InputEntry  # noqa: E402
from evtxcorr.model import RECORD_FIELDS, Source  # noqa: E402
from evtxcorr.parse import parse  # noqa: E402
from evtxcorr.parse.chunks import (  # noqa: E402
    CHUNK_HEADER_FIELDS,
    CHUNK_SIZE,
    FILE_HEADER_FIELDS,
    FILE_HEADER_SIZE,
    RECORD_MAGIC,
    mini_file,
)

CORPUS_FILES = ("system.evtx", "security.evtx", "sysmon.evtx", "Application_no_crc32.evtx")
FORGED_BUNDLE = REPO / "tests" / "fixtures" / "bundles" / "shared-nic-sole-dc-path.zip"
FORGED_EVENTS = 6  # records per forged seed
BACKENDS = ("evtx", "python-evtx")
STATUSES = ("ok", "partial", "skipped")
INTERESTING_32 = (0, 1, 7, 8, 0x7F, 0x80, 0xFF, 0x100, 0x1FF, 0x200, 0xFFF, 0x1000, 0x7FFF, 0x8000,
                  0xFFFF, 0x10000, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF)  # fmt: skip


logging.getLogger("Evtx").addHandler(logging.NullHandler())  # python-evtx logs each bad token


class Timeout(BaseException):  # noqa: N818 - BaseException: parse()'s `except Exception` must not catch it
    """One input ran past the time bound."""


@dataclass
class Finding:
    kind: str  # 'exception' | 'timeout' | 'contract'
    detail: str
    data: bytes = field(repr=False)
    backend: str = ""

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.data).hexdigest()[:16]


# --- seeds -------------------------------------------------------------------------------------------


def _first_chunk_file(raw: bytes) -> bytes | None:
    chunk = raw[FILE_HEADER_SIZE : FILE_HEADER_SIZE + CHUNK_SIZE]
    return mini_file(chunk) if len(chunk) == CHUNK_SIZE else None


def corpus_seeds(corpus: Path) -> list[bytes]:
    """One-chunk files cut from real logs (their first chunk under a fresh file header)."""
    seeds = []
    for name in CORPUS_FILES:
        path = corpus / name
        if path.is_file() and (seed := _first_chunk_file(path.read_bytes())):
            seeds.append(seed)
    return seeds


def forged_seeds() -> list[bytes]:
    """Small forged logs: the first FORGED_EVENTS events of each channel of one host of a forged
    bundle, re-written by the forge (classic, manifest and UserData payloads)."""
    from evtxcorr.forge import load_scenario
    from evtxcorr.forge.timeline import iter_expand
    from evtxcorr.forge.writer import evtx_bytes

    scenario = load_scenario("shared-nic-sole-dc-path")
    seeds = []
    for fqdn, _channel, first_id, events in iter_expand(scenario, seed=1):
        if fqdn.startswith("HV01"):
            picked = [event for _, event in zip(range(FORGED_EVENTS), events, strict=False)]
            if picked:
                seeds.append(evtx_bytes(picked, first_record_id=first_id))
    return seeds


def bundle_seed() -> list[bytes]:
    """The first chunk of a committed forged log, as written (dirty header, full chunk)."""
    with zipfile.ZipFile(FORGED_BUNDLE) as archive:
        name = next(n for n in sorted(archive.namelist()) if n.endswith("HV02/System.evtx"))
        seed = _first_chunk_file(archive.read(name))
    return [seed] if seed else []


def all_seeds(corpus: Path | None) -> list[bytes]:
    return (corpus_seeds(corpus) if corpus else []) + forged_seeds() + bundle_seed()


# --- mutations ---------------------------------------------------------------------------------------


def _value(rng: random.Random, width: int) -> int:
    if rng.random() < 0.7:
        return rng.choice(INTERESTING_32) & ((1 << (8 * width)) - 1)
    return rng.getrandbits(8 * width)


def _put(buf: bytearray, offset: int, fmt: str, value: int) -> None:
    if offset >= 0 and offset + struct.calcsize(fmt) <= len(buf):
        struct.pack_into(fmt, buf, offset, value & ((1 << (8 * struct.calcsize(fmt))) - 1))


def _field(buf: bytearray, rng: random.Random, base: int, layout: dict[str, tuple[int, str]]) -> None:
    offset, fmt = rng.choice(list(layout.values()))
    _put(buf, base + offset, fmt, _value(rng, struct.calcsize(fmt)))


def m_file_header(buf: bytearray, rng: random.Random) -> None:
    _field(buf, rng, 0, FILE_HEADER_FIELDS)


def m_chunk_header(buf: bytearray, rng: random.Random) -> None:
    _field(buf, rng, FILE_HEADER_SIZE, CHUNK_HEADER_FIELDS)


def _chunk_offset(rng: random.Random) -> int:
    return rng.choice((0, 1, 127, 128, 511, 512, 513, CHUNK_SIZE - 4, CHUNK_SIZE, rng.randrange(CHUNK_SIZE)))


def m_string_table(buf: bytearray, rng: random.Random) -> None:
    _put(buf, FILE_HEADER_SIZE + 128 + 4 * rng.randrange(64), "<I", _chunk_offset(rng))


def m_template_table(buf: bytearray, rng: random.Random) -> None:
    _put(buf, FILE_HEADER_SIZE + 384 + 4 * rng.randrange(32), "<I", _chunk_offset(rng))


def _template_definitions(buf: bytearray) -> list[int]:
    """Chunk offsets of resident template definitions (a template instance `0C 01 id off` whose
    definition offset is right behind it)."""
    chunk = bytes(buf[FILE_HEADER_SIZE : FILE_HEADER_SIZE + CHUNK_SIZE])
    found, pos = [], chunk.find(b"\x0c\x01", 512)
    while 0 <= pos < len(chunk) - 10 and len(found) < 64:
        definition = struct.unpack_from("<I", chunk, pos + 6)[0]
        if definition == pos + 10:
            found.append(definition)
        pos = chunk.find(b"\x0c\x01", pos + 2)
    return found


def m_template_chain(buf: bytearray, rng: random.Random) -> None:
    """A template definition's `next` pointer aimed at itself, another definition or junk, and the
    template table made to reach it (the chain python-evtx follows when it loads templates)."""
    definitions = _template_definitions(buf)
    if not definitions:
        return m_template_table(buf, rng)
    target = rng.choice(definitions)
    choices = (target, rng.choice(definitions), _chunk_offset(rng))
    _put(buf, FILE_HEADER_SIZE + target, "<I", rng.choice(choices))
    _put(buf, FILE_HEADER_SIZE + 384 + 4 * rng.randrange(32), "<I", target)


def _records(buf: bytearray) -> list[int]:
    chunk = bytes(buf[FILE_HEADER_SIZE : FILE_HEADER_SIZE + CHUNK_SIZE])
    found, pos = [], chunk.find(RECORD_MAGIC, 512)
    while pos >= 0 and len(found) < 256:
        found.append(pos)
        pos = chunk.find(RECORD_MAGIC, pos + 8)
    return found


def m_record_size(buf: bytearray, rng: random.Random) -> None:
    records = _records(buf)
    if records:
        at = FILE_HEADER_SIZE + rng.choice(records)
        _put(buf, at + (4 if rng.random() < 0.7 else 8), "<I" if rng.random() < 0.7 else "<Q", _value(rng, 4))


def m_binxml(buf: bytearray, rng: random.Random) -> None:
    """Bytes inside one record's BinXML: a token, a template or name offset, a substitution size."""
    records = _records(buf)
    if not records:
        return
    start = FILE_HEADER_SIZE + rng.choice(records)
    if start + 8 > len(buf):  # a record signature in the last bytes of a cut file
        return
    size = struct.unpack_from("<I", buf, start + 4)[0]
    end = min(start + max(size, 28), len(buf)) - 4
    if end <= start + 24:
        return
    at = rng.randrange(start + 24, end)
    kind = rng.random()
    if kind < 0.4:
        buf[at] = rng.choice(
            (0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x0C, 0x0D, 0x0E, 0x0F, 0x41, 0x46, 0xFF)
        )
    elif kind < 0.8:
        _put(buf, at, "<I" if kind < 0.6 else "<H", _value(rng, 4))
    else:
        buf[at] ^= 1 << rng.randrange(8)


def m_flip(buf: bytearray, rng: random.Random) -> None:
    for _ in range(rng.randint(1, 8)):
        at = rng.randrange(len(buf))
        buf[at] ^= 1 << rng.randrange(8)


def m_truncate(buf: bytearray, rng: random.Random) -> None:
    cut = rng.choice(
        (rng.randrange(len(buf)), FILE_HEADER_SIZE - rng.randrange(1, 64), len(buf) - rng.randrange(1, 4096))
    )
    del buf[max(cut, 0) :]


MUTATORS: tuple[tuple[Callable[[bytearray, random.Random], None], int], ...] = (
    (m_file_header, 2),
    (m_chunk_header, 3),
    (m_string_table, 2),
    (m_template_table, 2),
    (m_template_chain, 2),
    (m_record_size, 3),
    (m_binxml, 6),
    (m_flip, 2),
    (m_truncate, 1),
)


def mutate(seed: bytes, rng: random.Random) -> bytes:
    """1 to 4 structure-aware mutations of `seed`."""
    buf = bytearray(seed)
    functions, weights = zip(*MUTATORS, strict=True)
    for function in rng.choices(functions, weights, k=rng.randint(1, 4)):
        if buf:
            function(buf, rng)
    return bytes(buf)


# --- the target --------------------------------------------------------------------------------------


def _alarm(signum: int, frame: object) -> None:
    raise Timeout


def check(data: bytes, backend: str, workdir: Path, timeout: float) -> Finding | None:
    """Parse `data` as a file with `backend` first; the finding if parse() breaks a promise."""
    path = workdir / "input.evtx"
    path.write_bytes(data)
    entry = InputEntry(path="input.evtx", id=0)
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    faulthandler.dump_traceback_later(2 * timeout, exit=True)  # a hang the alarm cannot reach
    try:
        records = list(parse(Source(path, "input.evtx", "evtx"), entry, backend=backend))
    except Timeout:
        return Finding("timeout", f"over {timeout:g} s", data, backend)
    except BaseException as exc:  # noqa: BLE001 - PanicException derives from BaseException
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise
        return Finding("exception", f"{type(exc).__name__}: {exc}"[:500], data, backend)
    finally:
        faulthandler.cancel_dump_traceback_later()
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    return _contract(records, entry, data, backend)


def _contract(records: list[dict], entry: InputEntry, data: bytes, backend: str) -> Finding | None:
    if entry.status not in STATUSES:
        return Finding("contract", f"entry status {entry.status!r}", data, backend)
    if entry.records != len(records):
        return Finding("contract", f"entry.records {entry.records} != {len(records)} yielded", data, backend)
    for record in records:
        if set(record) != set(RECORD_FIELDS):
            missing = sorted(set(RECORD_FIELDS) ^ set(record))
            return Finding("contract", f"record fields differ: {missing}", data, backend)
        if not isinstance(record["time"], datetime) or record["time"].utcoffset() is None:
            return Finding("contract", f"record time {record['time']!r} is not timezone-aware", data, backend)
    return None


# --- engines -----------------------------------------------------------------------------------------


@dataclass
class Run:
    executions: int = 0
    findings: list[Finding] = field(default_factory=list)  # the first of each kind of finding
    counts: Counter[tuple[str, str]] = field(default_factory=Counter)  # every finding, by kind

    def record(self, finding: Finding | None, out: Path | None) -> None:
        if finding is None:
            return
        key = (finding.kind, finding.detail.split(":", 1)[0] + finding.backend)
        self.counts[key] += 1
        if self.counts[key] > 1:
            return
        self.findings.append(finding)
        if out:
            out.mkdir(parents=True, exist_ok=True)
            name = f"{finding.kind}-{finding.backend}-{finding.digest}"
            (out / f"{name}.evtx").write_bytes(finding.data)
            (out / f"{name}.txt").write_text(f"{finding.kind} ({finding.backend}): {finding.detail}\n")


def inputs(seeds: list[bytes], seed: int) -> Iterator[tuple[bytes, str]]:
    """(input, primary backend) forever, deterministic for `seed`: python-evtx first on one in four."""
    rng = random.Random(seed)
    while True:
        yield mutate(rng.choice(seeds), rng), "python-evtx" if rng.random() < 0.25 else "evtx"


def run_loop(seeds: list[bytes], *, seed: int, runs: int | None, seconds: float | None, timeout: float,
             out: Path | None = None) -> Run:  # fmt: skip
    """Our mutations in a seeded loop, bounded by `runs` and/or `seconds`."""
    run = Run()
    stop = time.monotonic() + seconds if seconds else None
    with tempfile.TemporaryDirectory(prefix="evtxcorr-fuzz-") as work:
        for data, backend in inputs(seeds, seed):
            if (runs is not None and run.executions >= runs) or (stop and time.monotonic() > stop):
                break
            run.executions += 1
            if out:
                out.mkdir(parents=True, exist_ok=True)
                (out / "last-input.evtx").write_bytes(data)
            run.record(check(data, backend, Path(work), timeout), out)
    if out:
        (out / "last-input.evtx").unlink(missing_ok=True)  # the run ended: no input is hanging
    return run


def replay(folder: Path, timeout: float) -> Run:
    run = Run()
    with tempfile.TemporaryDirectory(prefix="evtxcorr-fuzz-") as work:
        for path in sorted(folder.glob("*.evtx")):
            for backend in BACKENDS:
                run.executions += 1
                finding = check(path.read_bytes(), backend, Path(work), timeout)
                if finding:
                    finding.detail = f"{path.name}: {finding.detail}"
                    run.findings.append(finding)
    return run


def run_atheris(seeds: list[bytes], timeout: float, out: Path, argv: list[str]) -> None:
    """Coverage-guided: atheris drives the inputs, our mutations are its custom mutator."""
    import atheris

    atheris.instrument_all()  # parse/ and python-evtx are imported already: instrument what is loaded
    work = Path(tempfile.mkdtemp(prefix="evtxcorr-fuzz-"))

    def one_input(data: bytes) -> None:
        backend = BACKENDS[data[-1] % 2] if data else "evtx"
        finding = check(data, backend, work, timeout)
        if finding:
            raise RuntimeError(f"{finding.kind} ({finding.backend}): {finding.detail}")

    def mutator(data: bytes, max_size: int, seed: int) -> bytes:
        rng = random.Random(seed)
        base = data if len(data) >= FILE_HEADER_SIZE and rng.random() < 0.8 else rng.choice(seeds)
        return mutate(base, rng)[:max_size]

    out.mkdir(parents=True, exist_ok=True)
    corpus_dir = out / "corpus"
    corpus_dir.mkdir(exist_ok=True)
    for index, seed in enumerate(seeds):
        (corpus_dir / f"seed-{index}.evtx").write_bytes(seed)
    args = [sys.argv[0], str(corpus_dir), f"-artifact_prefix={out}/", "-max_len=80000", *argv]
    atheris.Setup(args, one_input, custom_mutator=mutator)
    atheris.Fuzz()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/fuzz", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=1, help="seed of the mutation loop (default 1)")
    parser.add_argument("--runs", type=int, help="stop after this many inputs")
    parser.add_argument("--seconds", type=float, help="stop after this many seconds")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds one input may take (a hang)")
    parser.add_argument("--out", type=Path, help="folder for findings (input .evtx + .txt each)")
    parser.add_argument(
        "--corpus", type=Path, default=REPO.parent / "shared" / "corpus" / "omerbenamram-evtx"
    )
    parser.add_argument("--replay", type=Path, help="re-run the .evtx files of this folder instead")
    parser.add_argument(
        "--atheris", action="store_true", help="coverage-guided with atheris (extra args after --)"
    )
    args, rest = parser.parse_known_args(argv)
    if args.replay:
        run = replay(args.replay, args.timeout)
    else:
        seeds = all_seeds(args.corpus if args.corpus.is_dir() else None)
        if args.atheris:
            run_atheris(
                seeds, args.timeout, args.out or Path("fuzz-findings"), [a for a in rest if a != "--"]
            )
            return 0
        if args.runs is None and args.seconds is None:
            parser.error("give --runs and/or --seconds (or --atheris)")
        run = run_loop(seeds, seed=args.seed, runs=args.runs, seconds=args.seconds, timeout=args.timeout,
                       out=args.out)  # fmt: skip
    for finding in run.findings:
        times = run.counts.get((finding.kind, finding.detail.split(":", 1)[0] + finding.backend), 1)
        print(f"{finding.kind} ({finding.backend}) {finding.digest}: {finding.detail} [{times}x]")
    print(f"{run.executions} executions, {len(run.findings)} distinct findings")
    return 1 if run.findings else 0


if __name__ == "__main__":
    sys.exit(main())
