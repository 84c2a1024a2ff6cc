"""Signals end a run cleanly: a real `evtxcorr analyze` process, a real signal while it works, then
exit 130 (SIGINT) or 143 (SIGTERM), the extracted logs gone, no report, no traceback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from evtxcorr.forge.bundle import forge_large_bundle, write_zip
from evtxcorr.signals import Interrupted, deferred, interruptible

POLL_S = 0.01
GIVE_UP_S = 120


@pytest.fixture(scope="module")
def big_zip(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    """A forged bundle of a few MB, zipped: extracting it fills the work dir, parsing it with the
    python-evtx backend takes tens of seconds."""
    root = tmp_path_factory.mktemp("signals")
    files, _ = forge_large_bundle(root / "src", 2, history_days=1, seed=3)
    archive = write_zip(root / "bundle.zip", files[0].parents[1])
    return archive, len(files)


def _members(work: Path) -> list[Path]:
    return list(work.glob("evtxcorr-*/extract-*/member-*"))


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_mid_parse_cleans_up_and_exits_128_plus_n(
    big_zip: tuple[Path, int], tmp_path: Path, signum: int, code: int
) -> None:
    archive, expected_members = big_zip
    work, out = tmp_path / "work", tmp_path / "out"
    work.mkdir()
    command = [sys.executable, "-m", "evtxcorr", "analyze", str(archive), "--parser", "python-evtx",
               "--work-dir", str(work), "-o", f"{out}/", "-q"]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + GIVE_UP_S
        while len(_members(work)) < expected_members:  # every member extracted: parsing starts
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the run never extracted its members"
            time.sleep(POLL_S)
        assert process.poll() is None
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=GIVE_UP_S)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == code, stderr
    assert stderr.strip() == (
        f"Error: interrupted by {signal.Signals(signum).name}; no report written, temporary files removed"
    )
    assert list(work.iterdir()) == []
    assert not out.exists() or list(out.iterdir()) == []


def test_deferred_block_finishes_before_the_signal_is_raised() -> None:
    finished = []
    with pytest.raises(Interrupted) as stopped, interruptible():
        with deferred():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)  # the handler runs here, and must not cut the block short
            finished.append(True)
        pytest.fail("Interrupted should be raised when the deferred block ends")
    assert finished == [True] and stopped.value.exit_code == 143
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL or callable(signal.getsignal(signal.SIGTERM))
