"""Side-by-side throughput on the same files, in one run: evtxcorr analyze vs a bare Rust `evtx` full
parse vs python-evtx (on a subset, as a rate) vs `cat`. Prints records/s, MB/s, peak RSS and ratios.

    python bench/compare.py                      # forge the large bundle into bench/out/big (once), then measure
    python bench/compare.py --bundle DIR         # measure an existing bundle
    python bench/compare.py --size-mb 50         # a smaller forged bundle

Each contender runs in its own process so peak RSS is its own (ru_maxrss of the child).
Not a test: machines are shared and noisy; read the ratios, not the seconds.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

CHILD = r"""
import json, resource, sys, time
from pathlib import Path
kind, files, limit = sys.argv[1], [Path(p) for p in json.loads(sys.argv[2])], int(sys.argv[3])
records = 0
start = time.perf_counter()
if kind == "evtxcorr":
    from evtxcorr.analyze import analyze
    from evtxcorr.render import render
    report = analyze(files)
    render(report, "json")
    records = int(report.ledger.totals()["records"])
elif kind == "evtx":
    import evtx
    for path in files:
        for _ in evtx.PyEvtxParser(str(path)).records_json():
            records += 1
elif kind == "python-evtx":
    import Evtx.Evtx as E
    for path in files:
        with E.Evtx(str(path)) as log:
            for chunk in log.get_file_header().chunks(include_inactive=True):
                for record in chunk.records():
                    record.xml()
                    records += 1
                    if records >= limit:
                        break
                if records >= limit:
                    break
        if records >= limit:
            break
elif kind == "cat":
    for path in files:
        with open(path, "rb") as handle:
            while handle.read(1 << 20):
                pass
seconds = time.perf_counter() - start
rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"records": records, "seconds": seconds, "rss_mb": rss_mb}))
"""


def measure(kind: str, files: list[Path], limit: int = 0) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, kind, json.dumps([str(f) for f in files]), str(limit)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--bundle", type=Path, help="existing bundle folder")
    parser.add_argument("--size-mb", type=int, default=200)
    parser.add_argument("--python-evtx-records", type=int, default=20000, help="subset size for python-evtx")
    args = parser.parse_args()

    bundle = args.bundle
    if bundle is None:
        bundle = HERE / "out" / f"big-{args.size_mb}"
        if not bundle.exists():
            from evtxcorr.forge import forge_large_bundle

            started = time.perf_counter()
            forge_large_bundle(bundle, args.size_mb)
            print(f"forged {bundle} in {time.perf_counter() - started:.1f} s")
    files = sorted(p for p in bundle.rglob("*") if p.is_file() and p.read_bytes()[:8] == b"ElfFile\0")
    total_mb = sum(f.stat().st_size for f in files) / 2**20
    print(
        f"{len(files)} files, {total_mb:.1f} MB; {platform.processor() or platform.machine()}, "
        f"python {platform.python_version()}"
    )

    rows = {
        "cat": measure("cat", files),
        "evtx full parse": measure("evtx", files),
        "evtxcorr analyze": measure("evtxcorr", files),
        "python-evtx (subset)": measure("python-evtx", files, args.python_evtx_records),
    }
    print(
        f"{'contender':24} {'records':>10} {'seconds':>9} {'records/s':>12} {'MB/s':>8} {'peak RSS MB':>12}"
    )
    for name, row in rows.items():
        rate = row["records"] / row["seconds"] if row["records"] else 0
        mbps = total_mb / row["seconds"] if "subset" not in name else float("nan")
        print(
            f"{name:24} {row['records']:>10} {row['seconds']:>9.2f} {rate:>12,.0f} {mbps:>8.1f} {row['rss_mb']:>12.0f}"
        )
    analyze_s = rows["evtxcorr analyze"]["seconds"]
    print(
        f"\nevtxcorr analyze throughput / evtx full parse: {rows['evtx full parse']['seconds'] / analyze_s:.2f}x"
    )
    print(f"evtxcorr analyze time / cat time: {analyze_s / rows['cat']['seconds']:.1f}x")
    py = rows["python-evtx (subset)"]
    print(f"python-evtx: {py['records'] / py['seconds']:,.0f} records/s (subset of {py['records']})")


if __name__ == "__main__":
    main()
