"""Archive handling scales linearly with the member count: discover() over zips of N tiny members for
growing N (distinct names, then all of one name), side by side in one run, printed as seconds per
1,000 members and the ratio to the first line.

    python bench/archives.py                       # 2,500 / 5,000 / 10,000 / 20,000 members
    python bench/archives.py --counts 10000 100000

Also times a zip whose entries overlap (the 'overlapping files' zip bomb): refused before any member
is decompressed, whatever its expanded size. Not a test: read the ratios, not the seconds.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE.parent))

from archive_builders import overlapping_zip  # noqa: E402

from evtxcorr.discover import discover  # noqa: E402
from evtxcorr.ledger import Ledger  # noqa: E402


def tiny_zip(path: Path, count: int, same_name: bool = False) -> Path:
    with warnings.catch_warnings(), zipfile.ZipFile(path, "w") as archive:
        warnings.simplefilter("ignore")  # zipfile warns about each duplicate name
        for index in range(count):
            archive.writestr("logs/same.txt" if same_name else f"logs/f{index:06d}.txt", b"x")
    return path


def seconds(path: Path, work: Path) -> tuple[float, int]:
    ledger = Ledger()
    start = time.perf_counter()
    discover([path], ledger, work_dir=work)
    return time.perf_counter() - start, len(ledger.entries)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[2500, 5000, 10000, 20000])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-archives-") as tmp:
        root = Path(tmp)
        base = None
        print(f"{'members':>9} {'names':>9} {'seconds':>8} {'s/1000':>7} {'ratio':>6}")
        for same in (False, True):
            for count in args.counts:
                made = tiny_zip(root / f"z{count}{same}.zip", count, same)
                elapsed, entries = seconds(made, root / f"w{count}{same}")
                per = elapsed / count * 1000
                base = base or per
                names = "one name" if same else "distinct"
                print(
                    f"{count:>9} {names:>9} {elapsed:>8.2f} {per:>7.3f} {per / base:>6.2f}   ({entries} entries)"
                )
        bomb = overlapping_zip(root / "bomb.zip", b"\x00" * 20_000_000, copies=50)
        elapsed, entries = seconds(bomb, root / "wb")
        print(
            f"overlapping zip, 50 x 20 MB entries in {bomb.stat().st_size:,} bytes: {elapsed:.3f} s, refused"
        )


if __name__ == "__main__":
    main()
