"""evtxcorr batch: the same 8 equal cases with 1 worker, then with 2, in one run; prints the speed-up.

    python bench/batch.py                      # 8 copies of a forged bundle under bench/out/batch
    python bench/batch.py --cases 8 --scale 2  # smaller cases (the noise scale of the forged bundle)
    python bench/batch.py --workers 1 2 4

The issue asks for >= 1.5x with 2 workers on a 2-core machine. Not a test: machines are shared and
noisy (other jobs take cores too); read the ratio of one run, measured side by side.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def build_archive(root: Path, cases: int, scenario: str, scale: float) -> Path:
    """`cases` copies of one forged bundle, each a case folder of the archive (forged once, kept)."""
    from evtxcorr.forge import forge_bundle

    archive = root / f"archive-{scenario}-x{scale:g}-{cases}"
    if archive.is_dir() and len(list(archive.iterdir())) == cases:
        return archive
    shutil.rmtree(archive, ignore_errors=True)
    source = root / f"bundle-{scenario}-x{scale:g}"
    if not source.is_dir():
        forge_bundle(scenario, source, scale=scale)
    for number in range(1, cases + 1):
        shutil.copytree(source / scenario, archive / f"case-{number:02d}")
    return archive


def measure(archive: Path, outdir: Path, workers: int) -> tuple[float, list[float]]:
    from evtxcorr.batch import BatchOptions, run_batch

    shutil.rmtree(outdir, ignore_errors=True)
    start = time.perf_counter()
    result = run_batch([archive], outdir, BatchOptions(workers=workers, force=True))
    seconds = time.perf_counter() - start
    failed = [row for row in result.rows if row["status"] != "ok"]
    if failed:
        sys.exit(f"bench: a case did not run: {failed[0]}")
    return seconds, [float(row["seconds"]) for row in result.rows]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cases", type=int, default=8)
    parser.add_argument("--scenario", default="shared-nic-sole-dc-path")
    parser.add_argument("--scale", type=float, default=6.0, help="noise scale of the forged bundle")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--out", type=Path, default=HERE / "out" / "batch")
    args = parser.parse_args()

    args.out.mkdir(parents=True, exist_ok=True)
    archive = build_archive(args.out, args.cases, args.scenario, args.scale)
    size = sum(p.stat().st_size for p in archive.rglob("*") if p.is_file())
    print(f"{args.cases} equal cases of {args.scenario} (noise x{args.scale:g}), {size / 1e6:.1f} MB in all")
    print(f"{platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} CPUs")
    warm = args.out / "warm-up-archive"  # one case, so the fork server and file cache are ready
    if not warm.is_dir():
        warm.mkdir()
        (warm / "case-01").symlink_to(archive / "case-01")
    measure(warm, args.out / "warm-up", 1)
    print(f"{'workers':>7} {'seconds':>8} {'cases/min':>9} {'mean case s':>11} {'speed-up':>8}")
    base = None
    for workers in args.workers:
        seconds, per_case = measure(archive, args.out / f"out-{workers}", workers)
        base = base or seconds
        print(
            f"{workers:>7} {seconds:>8.2f} {args.cases / seconds * 60:>9.1f} "
            f"{sum(per_case) / len(per_case):>11.2f} {base / seconds:>7.2f}x"
        )


if __name__ == "__main__":
    main()
