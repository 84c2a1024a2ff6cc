"""The progress bar moves while a large file is scanned, not only when it ends (issue 12)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from evtxcorr.analyze import Options, analyze
from evtxcorr.progress import Progress

FIXTURES = Path(__file__).parent / "fixtures" / "bundles"


def test_the_bar_moves_by_bytes_scanned_within_a_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import evtxcorr.parse as parse_module

    monkeypatch.setattr(parse_module, "PROGRESS_CHUNKS", 1)  # fixtures are small: report every chunk
    calls: list[tuple[str, int, bool, int, int | None]] = []

    def hook(source, records, finished, scanned=0, decoded=None):  # noqa: ANN001, ANN202
        calls.append((source.display, records, finished, scanned, decoded))

    analyze([FIXTURES / "shared-nic-sole-dc-path.zip"], Options(work_dir=tmp_path, jobs=1), progress=hook)
    within = [c for c in calls if not c[2] and c[3] > 0]
    assert within, "no progress while a file was being read"
    finished = [c for c in calls if c[2]]
    assert finished and all(c[4] is not None for c in finished)
    # Bytes scanned grow within a file.
    by_file: dict[str, list[int]] = {}
    for display, _records, _done, scanned, _decoded in within:
        by_file.setdefault(display, []).append(scanned)
    assert any(values == sorted(values) and len(values) > 1 for values in by_file.values())


def test_progress_bar_counts_bytes_once(monkeypatch: pytest.MonkeyPatch) -> None:
    from evtxcorr.model import Source

    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    source = Source(Path(__file__), "a.evtx", "evtx")
    size = Path(__file__).stat().st_size
    from tqdm import tqdm

    with Progress(enabled=True) as progress:
        progress.start([source])
        # tqdm turns itself off without a terminal: draw into a string instead.
        progress._bar = bar = tqdm(total=size, file=stream, disable=False)
        progress.update(source, 10, False, size // 2, 1)
        assert bar.n == size // 2
        progress.update(source, 20, True, 0, 2)
        assert bar.n == size
