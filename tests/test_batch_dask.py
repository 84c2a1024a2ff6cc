"""evtxcorr batch --scheduler: a real Dask scheduler and worker processes (started with the `dask scheduler`
and `dask worker` commands the README gives), on this machine's loopback; findings equal a local run's."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from evtxcorr.batch import BatchOptions, run_batch
from evtxcorr.cli import cli
from evtxcorr.forge import forge_bundle

distributed = pytest.importorskip("distributed", reason="needs the dask extra: pip install 'evtxcorr[dask]'")

START_TIMEOUT_S = 90


def _dask_command() -> str:
    beside = Path(sys.executable).parent / "dask"
    found = str(beside) if beside.exists() else shutil.which("dask")
    if not found:
        pytest.skip("the `dask` command is not installed next to this Python")
    return found


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`dask scheduler` and `dask worker` (two worker processes) on 127.0.0.1; yields the address."""
    folder = tmp_path_factory.mktemp("dask")
    dask = _dask_command()
    scheduler_file = folder / "scheduler.json"
    log = (folder / "cluster.log").open("wb")
    common = ["--host", "127.0.0.1", "--no-dashboard"]
    started = [
        subprocess.Popen(
            [dask, "scheduler", "--port", "0", "--scheduler-file", str(scheduler_file), *common],
            stdout=log, stderr=log, start_new_session=True,
        )
    ]  # fmt: skip
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not scheduler_file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        address = json.loads(scheduler_file.read_text(encoding="utf-8"))["address"]
        started.append(
            subprocess.Popen(
                [dask, "worker", address, "--nworkers", "2", "--nthreads", "1",
                 "--local-directory", str(folder / "workers"), *common],
                stdout=log, stderr=log, start_new_session=True,
            )
        )  # fmt: skip
        with distributed.Client(address, timeout=START_TIMEOUT_S) as client:
            client.wait_for_workers(2, timeout=START_TIMEOUT_S)
        yield address
    finally:
        for proc in reversed(started):
            _stop(proc)
        log.close()


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("archive")
    forge_bundle("shared-nic-twice", root, scale=0.2)
    forge_bundle("kerberos-delegation-missing", root, scale=0.2, zip=True)
    (root / "corrupt.zip").write_bytes(b"PK\x03\x04" + b"\x00" * 64)
    return root


def test_batch_on_a_dask_cluster_finds_what_a_local_run_finds(
    cluster: str, archive: Path, tmp_path: Path
) -> None:
    local = run_batch([archive], tmp_path / "local", BatchOptions(workers=2))

    result = CliRunner().invoke(
        cli, ["batch", str(archive), "-o", str(tmp_path / "dask"), "--scheduler", cluster, "-q"]
    )

    assert result.exit_code == 1, result.exception  # the corrupt archive failed, as it does locally
    assert isinstance(result.exception, SystemExit)
    remote = json.loads((tmp_path / "dask" / "summary.json").read_text(encoding="utf-8"))["cases"]
    assert [r["case"] for r in remote] == [r["case"] for r in local.rows]
    for here, there in zip(local.rows, remote, strict=True):
        assert (there["status"], there["reason"]) == (here["status"], here["reason"])
        assert there["findings"] == here["findings"]
        assert there["records"] == here["records"]
        assert here["worker"] is None
    with distributed.Client(cluster) as client:
        workers = set(client.scheduler_info()["workers"])
    assert {r["worker"] for r in remote} <= workers
    causes = {r["case"]: {f["cause"] for f in r["findings"]} for r in remote}
    assert causes["shared-nic-twice"] == {"shared-nic-sole-dc-path"}
    assert causes["kerberos-delegation-missing"] == {"kerberos-delegation-missing"}
    report = tmp_path / "dask" / "shared-nic-twice" / "evtxcorr-report.html"
    assert report.is_file()


def test_unreachable_scheduler_is_a_one_line_error(archive: Path, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr("evtxcorr.batch.runner.CONNECT_TIMEOUT_S", 2)
    result = CliRunner().invoke(
        cli, ["batch", str(archive), "-o", str(tmp_path / "out"), "--scheduler", "tcp://127.0.0.1:9", "-q"]
    )
    assert result.exit_code == 1
    assert "Error: cannot reach the Dask scheduler at tcp://127.0.0.1:9" in result.output
