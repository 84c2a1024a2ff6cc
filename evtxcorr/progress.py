"""A progress bar on stderr for long runs (files and megabytes parsed, records read).

Drawn only when stderr is a terminal (tqdm's disable=None), so logs and CI output stay clean.
"""

from __future__ import annotations

import sys
from types import TracebackType
from typing import TYPE_CHECKING

from evtxcorr.model import Source
from evtxcorr.terminal import safe

if TYPE_CHECKING:
    from tqdm import tqdm


class Progress:
    """Byte-based bar over the sources; `update` is called with a running record count per source."""

    def __init__(self, *, enabled: bool = True) -> None:
        self._enabled = enabled
        self._bar: tqdm | None = None
        self._sizes: dict[str, int] = {}
        self._records = 0
        self._decoded = 0
        self._moved: dict[str, int] = {}  # bytes of each source the bar has already moved by

    def start(self, sources: list[Source]) -> None:
        self._sizes = {s.display: s.size() for s in sources}
        if self._enabled:
            from tqdm import tqdm  # 13 ms to import: not for --quiet runs

            self._bar = tqdm(
                total=sum(self._sizes.values()),
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc="parsing",
                file=sys.stderr,
                disable=None,
                leave=False,
            )

    def update(
        self, source: Source, records: int, finished: bool, scanned: int = 0, decoded: int | None = None
    ) -> None:
        """`records` counted so far in `source`; `scanned`: its bytes read so far (the bar moves by
        them); `decoded`: its chunks decoded so far (selective parsing skips the others)."""
        if self._bar is None:
            return
        chunks = f", {self._decoded + decoded:,} chunks decoded" if decoded is not None else ""
        self._bar.set_postfix_str(
            f"{safe(source.display[-40:])} {self._records + records:,} records{chunks}", refresh=False
        )
        size = self._sizes.get(source.display, 0)
        done = size if finished else min(scanned, size)
        self._bar.update(max(0, done - self._moved.get(source.display, 0)))
        self._moved[source.display] = max(done, self._moved.get(source.display, 0))
        if finished:
            self._records += records
            self._decoded += decoded or 0
        else:
            self._bar.refresh()

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self._bar is not None:
            self._bar.close()


class CaseBar:
    """Bar over a batch's cases: done / failed / skipped and cases per minute (evtxcorr batch)."""

    def __init__(self, *, enabled: bool = True) -> None:
        self._enabled = enabled
        self._bar: tqdm | None = None
        self._counts: dict[str, int] = {}
        self._reused = 0

    def start(self, total: int, done: dict[str, int]) -> None:
        self._counts = {"ok": 0, "failed": 0, "skipped": 0, **done}
        self._reused = sum(done.values())
        if self._enabled:
            from tqdm import tqdm  # 13 ms to import: not for --quiet runs

            self._bar = tqdm(
                total=total, initial=self._reused, unit="case", desc="cases", file=sys.stderr,
                disable=None, leave=False, dynamic_ncols=True,
            )  # fmt: skip
            self._show()

    def update(self, status: str) -> None:
        self._counts[status] = self._counts.get(status, 0) + 1
        if self._bar is not None:
            self._bar.update(1)
            self._show()

    def _show(self) -> None:
        assert self._bar is not None
        elapsed = self._bar.format_dict.get("elapsed") or 0.0
        ran = self._bar.n - self._reused
        rate = f"{ran / elapsed * 60:.1f}/min" if elapsed > 0 and ran else "-/min"
        c = self._counts
        self._bar.set_postfix_str(f"done {c['ok']}, failed {c['failed']}, skipped {c['skipped']}, {rate}")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
