"""Issue 12's figures, measured side by side in one run on the same files (page cache warm):

* the whole `evtxcorr analyze` process (start-up, ledger, diagnosis, JSON report) against a bare Rust
  `evtx` full parse (`records_json()`, all cores) and against `cat`;
* peak RSS of each contender's whole process tree;
* `--parser python-evtx` against plain python-evtx `xml()` (on a subset of records, as a rate: a full
  python-evtx parse of 200 MB takes the best part of an hour);
* optionally `--all-records` (every record decoded: the old behaviour).

    python bench/compare.py --bundle DIR          # measure an existing bundle
    python bench/compare.py --size-mb 200         # forge bench/out/big-200 once, then measure
    python bench/compare.py --size-mb 1000 --scenario dc-unreachable-cluster-wide   # 8 nodes

Not a test: machines are shared and noisy; read the ratios, not the seconds. Each contender runs as its
own process; the wrapper samples the RSS of its whole process tree (pool workers included) every 20 ms
and reads the largest single process from RUSAGE_CHILDREN. Best of --repeat, the contenders taking
turns round after round (a shared machine's speed drifts); each round's analyze/bare ratio is printed
too.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent

WRAPPER = r"""
import json, os, resource, subprocess, sys, time
PAGE = os.sysconf("SC_PAGE_SIZE")

PARENTS = {}  # pid -> parent pid, read once per process: the sampler's own CPU is taken from the
# contender it measures (reading every process's stat each 20 ms was about 7% of a core)

def tree_rss(root):
    # Sum of the resident pages of `root` and all its descendants (read from /proc).
    alive = {int(name) for name in os.listdir("/proc") if name.isdigit()}
    for pid in list(PARENTS):
        if pid not in alive:
            del PARENTS[pid]
    for pid in alive - PARENTS.keys():
        try:
            with open(f"/proc/{pid}/stat") as handle:
                PARENTS[pid] = int(handle.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            pass
    parents = PARENTS
    tree, grew = {root}, True
    while grew:
        more = {pid for pid, parent in parents.items() if parent in tree} - tree
        tree |= more
        grew = bool(more)
    total = 0
    for pid in tree:
        try:
            with open(f"/proc/{pid}/statm") as handle:
                total += int(handle.read().split()[1]) * PAGE
        except (OSError, IndexError, ValueError):
            pass
    return total

start = time.perf_counter()
child = subprocess.Popen(json.loads(sys.argv[1]), stdout=subprocess.DEVNULL)
peak = 0
while child.poll() is None:
    peak = max(peak, tree_rss(child.pid))
    time.sleep(0.02)
seconds = time.perf_counter() - start
if child.returncode:
    raise SystemExit(child.returncode)
print(json.dumps({"seconds": seconds, "rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
                  "tree_mb": peak / 2**20}))
"""

EVTX_PARSE = r"""
import json, sys, evtx
records = 0
for path in json.loads(sys.argv[1]):
    for _ in evtx.PyEvtxParser(path).records_json():
        records += 1
print(records, file=sys.stderr)
"""

PYTHON_EVTX = r"""
import json, sys, time
import Evtx.Evtx as E
paths, limit = json.loads(sys.argv[1]), int(sys.argv[2])
records, start = 0, time.perf_counter()
for path in paths:
    with E.Evtx(path) as log:
        for chunk in log.get_file_header().chunks(include_inactive=True):
            if not chunk.check_magic():
                continue
            for record in chunk.records():
                record.xml()
                records += 1
                if records >= limit:
                    print(json.dumps({"records": records, "seconds": time.perf_counter() - start}))
                    sys.exit(0)
print(json.dumps({"records": records, "seconds": time.perf_counter() - start}))
"""


def run_once(command: list[str]) -> dict[str, float]:
    """Wall time and RSS of one run of `command`."""
    out = subprocess.run(
        [sys.executable, "-c", WRAPPER, json.dumps(command)], check=True, capture_output=True, text=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(command: list[str], repeat: int) -> dict[str, float]:
    """Best wall time (and the RSS of that run) of `command` over `repeat` runs."""
    return min((run_once(command) for _ in range(repeat)), key=lambda row: row["seconds"])


def run_side_by_side(commands: dict[str, list[str]], repeat: int) -> dict[str, dict[str, float]]:
    """Best run of each command, the commands taking turns (round after round) so that a machine whose
    speed drifts (shared cores) slows every contender alike; also each round's analyze / bare ratio."""
    best: dict[str, dict[str, float]] = {}
    rounds: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(repeat):
        for name, command in commands.items():
            row = run_once(command)
            rounds[name].append(row["seconds"])
            if name not in best or row["seconds"] < best[name]["seconds"]:
                best[name] = row
    for name, row in best.items():
        row["rounds"] = rounds[name]  # type: ignore[assignment]
    return best


def evtxcorr_command(bundle: Path, report: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "evtxcorr",
        "analyze",
        str(bundle),
        "--format",
        "json",
        "-o",
        str(report),
        "-q",
        *extra,
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--bundle", type=Path, help="existing bundle folder")
    parser.add_argument("--size-mb", type=int, default=200)
    parser.add_argument(
        "--scenario", default=None, help="forge scenario (dc-unreachable-cluster-wide: 8 nodes)"
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs per contender (best is kept)")
    parser.add_argument("--python-evtx-records", type=int, default=3000, help="subset size for python-evtx")
    parser.add_argument("--all-records", action="store_true", help="also time analyze --all-records (slow)")
    args = parser.parse_args()

    bundle = args.bundle
    if bundle is None:
        bundle = HERE / "out" / (f"big-{args.size_mb}" + (f"-{args.scenario}" if args.scenario else ""))
        if not bundle.exists():
            command = [
                sys.executable,
                "-m",
                "evtxcorr",
                "forge",
                "big",
                str(bundle),
                "--size-mb",
                str(args.size_mb),
            ]
            if args.scenario:
                command += ["--scenario", args.scenario]
            subprocess.run(command, check=True)
    files = sorted(str(p) for p in bundle.rglob("*") if p.is_file() and p.read_bytes()[:8] == b"ElfFile\0")
    total_mb = sum(Path(f).stat().st_size for f in files) / 2**20
    print(f"{bundle}: {len(files)} .evtx files, {total_mb:.1f} MB")
    print(f"{platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}\n")

    # As pip does on install: byte-compile evtxcorr, so every run reads .pyc files. An editable checkout
    # under PYTHONDONTWRITEBYTECODE (set on these machines) would otherwise compile its ~60 modules on
    # every start (about 0.1 s) and measure a cost no installed copy has.
    compileall.compile_dir(str(HERE.parent / "evtxcorr"), quiet=1)

    with tempfile.TemporaryDirectory() as scratch:
        report = Path(scratch) / "report.json"
        rows = run_side_by_side(
            {
                "cat": ["cat", *files],
                "evtx full parse": [sys.executable, "-c", EVTX_PARSE, json.dumps(files)],
                "evtxcorr analyze": evtxcorr_command(bundle, report),
            },
            args.repeat,
        )
        rows["analyze --parser python-evtx"] = run(
            evtxcorr_command(bundle, report, "--parser", "python-evtx"), 1
        )
        if args.all_records:
            rows["analyze --all-records"] = run(evtxcorr_command(bundle, report, "--all-records"), 1)
        totals = json.loads(report.read_text())["totals"]
    py = subprocess.run(
        [sys.executable, "-c", PYTHON_EVTX, json.dumps(files), str(args.python_evtx_records)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    py_row = json.loads(py.stdout.strip().splitlines()[-1])
    records = totals["records"]

    print(f"{'contender':30} {'seconds':>9} {'MB/s':>9} {'max RSS MB':>11} {'tree RSS MB':>12}")
    for name, row in rows.items():
        print(
            f"{name:30} {row['seconds']:>9.2f} {total_mb / row['seconds']:>9.1f} {row['rss_mb']:>11.0f} "
            f"{row['tree_mb']:>12.0f}"
        )
    py_rate = py_row["records"] / py_row["seconds"]
    print(f"{'python-evtx xml() (subset)':30} {records / py_rate:>9.1f} {'':>9} {'':>12}  (extrapolated from "
          f"{py_row['records']} records at {py_rate:,.0f}/s)")  # fmt: skip
    analyze = rows["evtxcorr analyze"]
    print(f"\nrecords {records:,}, decoded {records - totals.get('records_undecoded', 0):,}, "
          f"chunks {totals['chunks']:,}, skipped {totals.get('chunks_skipped', 0):,}")  # fmt: skip
    print(
        f"analyze throughput / bare evtx parse: {rows['evtx full parse']['seconds'] / analyze['seconds']:.2f}x"
    )
    rounds = zip(rows["evtx full parse"]["rounds"], analyze["rounds"], strict=True)  # type: ignore[call-overload]
    print(f"  per round (same moment):           {', '.join(f'{bare / mine:.2f}x' for bare, mine in rounds)}")
    print(f"analyze time / cat time:             {analyze['seconds'] / rows['cat']['seconds']:.1f}x")
    print(
        f"analyze peak RSS:                    {analyze['tree_mb']:.0f} MB, the whole process tree "
        f"(sampled every 20 ms; largest single process {analyze['rss_mb']:.0f} MB)"
    )
    slow = rows["analyze --parser python-evtx"]["seconds"]
    print(f"analyze --parser python-evtx / plain python-evtx xml(): {records / py_rate / slow:.1f}x")
    if "analyze --all-records" in rows:
        print(
            f"analyze / analyze --all-records: {rows['analyze --all-records']['seconds'] / analyze['seconds']:.1f}x"
        )


if __name__ == "__main__":
    main()
