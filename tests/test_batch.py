"""evtxcorr batch: cases, per-case reports, summaries, resume, isolation of failing cases, interruption.

The scenario archive is forged once per session (small noise scale): each forge scenario is one case,
some of them zipped, and each case must get exactly its own causes.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import time
import zipfile
from pathlib import Path

import pytest
from archive_builders import cab_bytes, seven_zip, tar_gz
from click.testing import CliRunner

from evtxcorr.batch import BatchOptions, run_batch
from evtxcorr.batch.cases import plan_cases
from evtxcorr.batch.child import RESULT_FILE, run, summary_finding
from evtxcorr.batch.runner import Children, run_case
from evtxcorr.batch.state import ROW_KEYS, STATE_FILE
from evtxcorr.batch.summary import csv_cell
from evtxcorr.cli import cli
from evtxcorr.errors import InputError, RuleError
from evtxcorr.forge import forge_bundle, list_scenarios, truth
from evtxcorr.progress import CaseBar

SCALE = 0.2  # background noise: enough to bury the incidents, small enough to keep the tests fast
ZIPPED = {"shared-nic-sole-dc-path", "dc-unreachable-cluster-wide", "noise-only", "secure-channel-broken"}
REPORTS = ("evtxcorr-report.html", "evtxcorr-report.json", "evtxcorr-report.md")
HOSTILE = '<img src=x onerror=alert(1)>=HYPERLINK("x")'


def invoke(*args: str) -> object:
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def summary(outdir: Path) -> dict:
    return json.loads((outdir / "summary.json").read_text(encoding="utf-8"))


def by_case(outdir: Path) -> dict[str, dict]:
    return {row["case"]: row for row in summary(outdir)["cases"]}


def short(host: str) -> str:
    return host.split(".")[0].lower()


def hosts_of(finding: dict) -> set[str]:
    """Short host names of a summary finding (a cluster-scoped one lists its hosts, comma-separated)."""
    return {short(host) for host in finding["host"].split(", ")}


@pytest.fixture(scope="session")
def scenario_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every forge scenario as one case of an archive folder, some as .zip, some as folders."""
    root = tmp_path_factory.mktemp("archive")
    for scenario_id in list_scenarios():
        forge_bundle(scenario_id, root, scale=SCALE, zip=scenario_id in ZIPPED)
    return root


@pytest.fixture(scope="session")
def small_bundles(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two small bundles to copy into per-test archives: one folder, one zip."""
    root = tmp_path_factory.mktemp("small")
    forge_bundle("kerberos-delegation-missing", root, scale=SCALE, zip=True)
    forge_bundle("secure-channel-broken", root, scale=SCALE)
    return root


@pytest.fixture(scope="module")
def scenario_batch(scenario_archive: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    outdir = tmp_path_factory.mktemp("sweep") / "out"
    result = invoke("batch", scenario_archive, "-o", outdir, "--workers", "2")
    return outdir, result


def _pair(small_bundles: Path, dest: Path) -> Path:
    archive = dest / "archive"
    archive.mkdir()
    shutil.copy2(small_bundles / "kerberos-delegation-missing.zip", archive)
    shutil.copytree(small_bundles / "secure-channel-broken", archive / "secure-channel-broken")
    return archive


# --- the scenario batch -------------------------------------------------------------------------------


def test_each_scenario_case_gets_exactly_its_own_causes(scenario_batch: tuple[Path, object]) -> None:
    outdir, result = scenario_batch
    assert result.exit_code == 0, result.output
    cases = by_case(outdir)
    assert set(cases) == set(list_scenarios())
    for scenario_id, row in cases.items():
        assert row["status"] == "ok", row
        expected = [t for t in truth(scenario_id) if t["cause"] != "none"]
        assert {f["cause"] for f in row["findings"]} == {t["cause"] for t in expected}, scenario_id
        for want in expected:
            hosts = set().union(*(hosts_of(f) for f in row["findings"] if f["cause"] == want["cause"]))
            assert short(want["host"]) in hosts, (scenario_id, want["host"], hosts)
        zipped = scenario_id in ZIPPED
        assert row["path"].endswith(f"{scenario_id}.zip" if zipped else scenario_id)
        assert row["records"] > 0 and row["seconds"] > 0 and row["worker"] is None


def test_each_case_has_the_reports_analyze_writes(scenario_batch: tuple[Path, object]) -> None:
    outdir, _ = scenario_batch
    for row in summary(outdir)["cases"]:
        folder = outdir / row["case"]
        assert sorted(p.name for p in folder.glob("evtxcorr-report.*")) == list(REPORTS)
        report = json.loads((folder / "evtxcorr-report.json").read_text(encoding="utf-8"))
        assert [summary_finding(f) for f in report["findings"] + report["benign"]] == row["findings"]
        assert all(e["path"].startswith(row["path"]) for e in report["inputs"])  # its own inputs only


def test_summary_json_shape_and_totals(scenario_batch: tuple[Path, object]) -> None:
    outdir, _ = scenario_batch
    doc = summary(outdir)
    assert doc["tool"] == "evtxcorr" and doc["generated"].endswith("Z")
    for row in doc["cases"]:
        assert tuple(row) == ROW_KEYS
        keys = ("cause", "host", "incident", "confidence", "kind", "certainty", "confidence_range")
        assert all(tuple(f) == keys for f in row["findings"])
    totals = doc["totals"]
    assert totals["cases"] == len(doc["cases"]) == totals["ok"]
    assert totals["failed"] == totals["skipped"] == 0
    assert totals["findings"] == sum(len(r["findings"]) for r in doc["cases"])
    assert totals["records"] == sum(r["records"] for r in doc["cases"])


def test_summary_csv_has_a_row_per_case_and_finding(scenario_batch: tuple[Path, object]) -> None:
    outdir, _ = scenario_batch
    with (outdir / "summary.csv").open(encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.DictReader(handle))
    expected = sum(max(1, len(r["findings"])) for r in summary(outdir)["cases"])
    assert len(rows) == expected
    twice = [r for r in rows if r["case"] == "shared-nic-twice"]
    assert [(r["cause"], r["incident"]) for r in twice] == [
        ("shared-nic-sole-dc-path", "I1"),
        ("shared-nic-sole-dc-path", "I2"),
    ]
    assert twice[0]["report"] == "shared-nic-twice/evtxcorr-report.html"
    quiet = next(r for r in rows if r["case"] == "noise-only")
    assert quiet["status"] == "ok" and quiet["cause"] == ""
    boot = [r for r in rows if r["case"] == "boot-time-dc-not-ready"]
    assert boot and {(r["cause"], r["kind"]) for r in boot} == {("boot-time-dc-not-ready", "benign")}


def test_summary_html_is_offline_and_links_every_case(scenario_batch: tuple[Path, object]) -> None:
    outdir, _ = scenario_batch
    page = (outdir / "summary.html").read_text(encoding="utf-8")
    assert "default-src 'none'" in page and "<script" not in page
    for case in by_case(outdir):
        assert f'href="{case}/evtxcorr-report.html"' in page
        assert (outdir / case / "evtxcorr-report.html").is_file()
    assert "Kerberos" in page  # cause titles, not only ids
    assert "(expected, nothing to do)" in page  # a benign explanation is not shown as a cause


def test_rerun_of_the_whole_batch_does_nothing(
    scenario_batch: tuple[Path, object], scenario_archive: Path, tmp_path: Path
) -> None:
    outdir, _ = scenario_batch
    copy = tmp_path / "copy"
    shutil.copytree(outdir, copy)
    before = {p: p.stat().st_mtime_ns for p in copy.rglob("evtxcorr-report.*")}
    result = run_batch([scenario_archive], copy)
    assert result.ran == 0 and result.reused == len(list_scenarios())
    assert {p: p.stat().st_mtime_ns for p in copy.rglob("evtxcorr-report.*")} == before
    assert [r["findings"] for r in summary(copy)["cases"]] == [
        r["findings"] for r in summary(outdir)["cases"]
    ]


# --- resume -----------------------------------------------------------------------------------------


def test_rerun_redoes_only_what_changed_and_force_redoes_all(small_bundles: Path, tmp_path: Path) -> None:
    archive = _pair(small_bundles, tmp_path)
    outdir = tmp_path / "out"
    first = run_batch([archive], outdir, BatchOptions(workers=2))
    assert (first.ran, first.reused) == (2, 0)
    assert {r["status"] for r in first.rows} == {"ok"}

    again = run_batch([archive], outdir)
    assert (again.ran, again.reused) == (0, 2)

    changed = archive / "secure-channel-broken" / "HV01" / "System.evtx"
    os.utime(changed, ns=(changed.stat().st_atime_ns, changed.stat().st_mtime_ns + 1_000_000_000))
    touched = run_batch([archive], outdir)
    assert (touched.ran, touched.reused) == (1, 1)

    (outdir / "kerberos-delegation-missing" / "evtxcorr-report.html").unlink()
    repaired = run_batch([archive], outdir)
    assert (repaired.ran, repaired.reused) == (1, 1)
    assert (outdir / "kerberos-delegation-missing" / "evtxcorr-report.html").is_file()

    fewer = run_batch([archive], outdir, BatchOptions(formats=("json",)))
    assert fewer.ran == 0  # the reports asked for are there
    japanese = run_batch([archive], outdir, BatchOptions(lang="ja", formats=("md",)))
    assert japanese.ran == 2  # other settings: other reports
    assert "\u539f\u56e0" in (outdir / "kerberos-delegation-missing" / "evtxcorr-report.md").read_text(
        "utf-8"
    )

    team = tmp_path / "team-rules"  # a team's settings: only findings of 90% and more are reported
    team.mkdir()
    (team / "settings.yaml").write_text("diagnose:\n  threshold: 0.9\n", encoding="utf-8")
    strict = run_batch([archive], outdir, BatchOptions(rule_dirs=(team,), formats=("json",)))
    assert strict.ran == 2  # other rules: other reports
    assert {r["case"]: [f["cause"] for f in r["findings"]] for r in strict.rows} == {
        "kerberos-delegation-missing": [],  # 85%: below the team's threshold
        "secure-channel-broken": ["secure-channel-broken"],  # 100%
    }
    (team / "settings.yaml").write_text("diagnose:\n  threshold: [\n", encoding="utf-8")
    with pytest.raises(RuleError):  # refused once, before any case runs
        run_batch([archive], outdir, BatchOptions(rule_dirs=(team,)))

    forced = invoke("batch", archive, "-o", outdir, "--force", "--lang", "ja", "-f", "md")
    assert forced.exit_code == 0, forced.output
    assert "2 run now, 0 unchanged" in forced.output
    assert [r["findings"] for r in summary(outdir)["cases"]] == [r["findings"] for r in first.rows]


def test_source_tz_reaches_every_case(small_bundles: Path, tmp_path: Path) -> None:
    """A case sent as Event Viewer CSV (local times, no zone) needs --source-tz, as analyze does: without
    it that case fails saying so and the others go on; with it, it gets its cause (unconfirmed: no
    payload). The zone shapes the reports, so changing it redoes the cases."""
    archive = tmp_path / "archive"
    archive.mkdir()
    shutil.copy2(small_bundles / "kerberos-delegation-missing.zip", archive)
    forge_bundle("secure-channel-broken", archive, scale=SCALE, format="csv-eventviewer-ja", tz="Asia/Tokyo")
    outdir = tmp_path / "out"

    without = invoke("batch", archive, "-o", outdir, "-f", "json")
    assert without.exit_code == 1
    rows = by_case(outdir)
    assert rows["kerberos-delegation-missing"]["status"] == "ok"
    assert rows["secure-channel-broken"]["status"] == "failed"
    assert "give --source-tz ZONE" in rows["secure-channel-broken"]["reason"]

    given = invoke("batch", archive, "-o", outdir, "-f", "json", "--source-tz", "Asia/Tokyo")
    assert given.exit_code == 0, given.output
    csv_case = by_case(outdir)["secure-channel-broken"]
    assert [(f["cause"], short(f["host"]), f["certainty"]) for f in csv_case["findings"]] == [
        ("secure-channel-broken", "hv02", "unconfirmed")
    ]
    again = run_batch([archive], outdir, BatchOptions(formats=("json",), source_tz="Asia/Tokyo"))
    assert (again.ran, again.reused) == (0, 2)
    other = run_batch([archive], outdir, BatchOptions(formats=("json",), source_tz="UTC"))
    assert other.ran == 2


# --- failures, time limits, hostile names ----------------------------------------------------------------


def _slow_case(small_bundles: Path, target: Path, copies: int = 1000) -> Path:
    """A case folder that takes far longer than any time limit here: the same logs many times over
    (hard links, so it costs no disk), each copy read again and its records dropped as duplicates.
    1000 copies are about 40 s of work on the 2 shared cores here (150 took 5.7 s, which a 5 s limit
    did not always stop); the tests stop it long before, so its size costs only the links."""
    logs = sorted((small_bundles / "secure-channel-broken").rglob("*.evtx"))
    for number in range(copies):
        for log in logs:
            link = target / f"copy{number:03d}" / log.relative_to(small_bundles)
            link.parent.mkdir(parents=True, exist_ok=True)
            try:
                link.hardlink_to(log)
            except OSError:
                shutil.copy2(log, link)
    return target


def _live_case_processes() -> list[int]:
    """Processes forked by this test process's multiprocessing fork server that are still running."""
    servers = [pid for pid in _children(os.getpid()) if b"forkserver" in _read(f"/proc/{pid}/cmdline")]
    return [pid for server in servers for pid in _children(server) if _state(pid) not in ("Z", "X", "")]


def _children(parent: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _read(f"/proc/{entry.name}/stat").decode(errors="replace")
            fields = stat.rsplit(")", 1)[-1].split()
            if len(fields) > 1 and fields[1] == str(parent):
                found.append(int(entry.name))
    return found


def _state(pid: int) -> str:
    fields = _read(f"/proc/{pid}/stat").decode(errors="replace").rsplit(")", 1)[-1].split()
    return fields[0] if fields else ""


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError:
        return b""


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc to find leftover processes")
def test_failing_cases_do_not_stop_the_others(small_bundles: Path, tmp_path: Path) -> None:
    archive = _pair(small_bundles, tmp_path)
    shutil.copytree(small_bundles / "secure-channel-broken", archive / HOSTILE)
    (archive / "corrupt.zip").write_bytes(b"PK\x03\x04" + b"\x00" * 64)
    (archive / "notes").mkdir()
    (archive / "notes" / "readme.txt").write_text("collected by the customer\n", encoding="utf-8")
    _slow_case(small_bundles, archive / "zz-slow")
    work = tmp_path / "work"
    work.mkdir()
    outdir = tmp_path / "out"

    result = invoke("batch", archive, "-o", outdir, "--case-timeout", "5", "--work-dir", work, "-w", "2")

    assert result.exit_code == 1, result.output
    rows = by_case(outdir)
    assert rows["corrupt"]["status"] == "failed"
    assert "archive cannot be read" in rows["corrupt"]["reason"]
    assert rows["zz-slow"]["status"] == "failed" and "time limit of 5 s" in rows["zz-slow"]["reason"]
    assert rows["notes"]["status"] == "skipped" and "readme.txt" in rows["notes"]["reason"]
    assert rows["kerberos-delegation-missing"]["status"] == "ok"
    assert rows[HOSTILE]["status"] == "ok" and rows[HOSTILE]["findings"]
    assert "failed: corrupt: the archive cannot be read" in result.output
    for failed in ("corrupt", "zz-slow"):
        assert not list((outdir / failed).glob("evtxcorr-report.*"))  # no report, not even a partial one
    assert list(work.iterdir()) == []  # the stopped case's work folder is gone
    assert _live_case_processes() == []  # and so is its process


def test_hostile_case_names_are_escaped_and_neutralised(small_bundles: Path, tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    archive.mkdir()
    shutil.copytree(small_bundles / "secure-channel-broken", archive / HOSTILE)
    (archive / "-cmd|calc").mkdir()  # a case without a log, whose name a spreadsheet would run
    outdir = tmp_path / "out"
    result = invoke("batch", archive, "-o", outdir, "-q")
    assert result.exit_code == 0, result.output
    page = (outdir / "summary.html").read_text(encoding="utf-8")
    assert "<img" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    link = "%3Cimg%20src%3Dx%20onerror%3Dalert%281%29%3E%3DHYPERLINK%28%22x%22%29/evtxcorr-report.html"
    assert f'href="{link}"' in page
    with (outdir / "summary.csv").open(encoding="utf-8-sig", newline="") as handle:
        cells = [row["case"] for row in csv.DictReader(handle)]
    assert sorted(cells) == sorted(["'-cmd|calc", HOSTILE])


@pytest.mark.skipif(sys.platform != "linux", reason="only Linux file systems take any bytes as a name")
def test_a_case_folder_named_in_shift_jis_is_analysed(small_bundles: Path, tmp_path: Path) -> None:
    """A customer folder extracted with its Shift_JIS name (not UTF-8): analysed, and every output
    stays valid UTF-8, with the name's bytes kept (JSON escapes, percent-encoded link)."""
    archive = tmp_path / "archive"
    name = os.fsdecode(b"\x8c\xda\x8bq-case")  # 顧客 in Shift_JIS
    shutil.copytree(small_bundles / "secure-channel-broken", archive / name)
    outdir = tmp_path / "out"
    result = invoke("batch", archive, "-o", outdir, "-q")
    assert result.exit_code == 0, result.output
    row = summary(outdir)["cases"][0]
    assert row["case"] == name and row["status"] == "ok" and row["findings"]
    assert json.loads((outdir / name / "evtxcorr-report.json").read_bytes().decode("utf-8"))["findings"]
    assert 'href="%8C%DA%8Bq-case/evtxcorr-report.html"' in (outdir / "summary.html").read_text("utf-8")
    (outdir / "summary.csv").read_bytes().decode("utf-8")
    assert run_batch([archive], outdir).reused == 1


@pytest.mark.parametrize(
    ("cell", "expected"),
    [("=1+2", "'=1+2"), ("+A1", "'+A1"), ("-2", "'-2"), ("@SUM(A1)", "'@SUM(A1)"), ("\tx", "'\tx"),
     ("\rx", "'\rx"), ("HV01", "HV01"), ("a=b", "a=b"), (None, ""), (0.95, "0.95")],
)  # fmt: skip
def test_csv_cells_a_spreadsheet_would_run_are_neutralised(cell: object, expected: str) -> None:
    assert csv_cell(cell) == expected


# --- interruption -----------------------------------------------------------------------------------------


def _batch_in_the_middle(small_bundles: Path, tmp_path: Path) -> tuple[subprocess.Popen[bytes], Path, Path]:
    """`python -m evtxcorr batch` (two workers) over a slow case and two small ones, returned once the
    first small case is saved, while the slow one runs."""
    archive = _pair(small_bundles, tmp_path)
    _slow_case(small_bundles, archive / "a-slow")
    work = tmp_path / "work"
    work.mkdir()
    outdir = tmp_path / "out"
    command = [sys.executable, "-m", "evtxcorr", "batch", str(archive), "-o", str(outdir), "-w", "2",
               "--work-dir", str(work), "-q"]  # fmt: skip
    batch = subprocess.Popen(command, stderr=subprocess.PIPE)
    first_done = outdir / "kerberos-delegation-missing" / STATE_FILE
    deadline = time.monotonic() + 120
    while not first_done.exists() and batch.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    return batch, archive, work


@pytest.mark.parametrize(
    ("signum", "code", "resume"), [(signal.SIGINT, 130, True), (signal.SIGTERM, 143, False)]
)
def test_interrupted_batch_stops_writes_its_summary_and_resumes(
    small_bundles: Path, tmp_path: Path, signum: int, code: int, resume: bool
) -> None:
    batch, archive, work = _batch_in_the_middle(small_bundles, tmp_path)
    outdir = tmp_path / "out"
    batch.send_signal(signum)
    _, stderr = batch.communicate(timeout=60)

    assert batch.returncode == code, stderr
    assert b"interrupted" in stderr
    rows = by_case(outdir)
    assert rows["kerberos-delegation-missing"]["status"] == "ok"
    assert rows["a-slow"]["status"] == "failed" and "interrupted" in rows["a-slow"]["reason"]
    assert not list((outdir / "a-slow").glob("evtxcorr-report.*"))
    assert list(work.iterdir()) == []
    done = sum(row["status"] == "ok" for row in rows.values())
    if not resume:
        return
    resumed = run_batch([archive], outdir, BatchOptions(case_timeout=1))
    assert resumed.reused == done and resumed.ran == 3 - done
    assert by_case(outdir)["a-slow"]["reason"].startswith("time limit")


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc to follow the processes")
def test_a_killed_batch_leaves_no_case_running_and_resumes(small_bundles: Path, tmp_path: Path) -> None:
    """kill -9 (or a crash) of the batch: its cases die with it, and the next run goes on."""
    batch, archive, _ = _batch_in_the_middle(small_bundles, tmp_path)
    helpers = _children(batch.pid)  # the fork server and multiprocessing's resource tracker
    cases = [pid for helper in helpers for pid in _children(helper)]
    assert cases, "a case should be running"
    batch.kill()
    batch.communicate(timeout=60)
    deadline = time.monotonic() + 3  # the slow case alone would run for many seconds more
    while [p for p in helpers + cases if _state(p) not in ("Z", "X", "")] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [p for p in helpers + cases if _state(p) not in ("Z", "X", "")] == []

    resumed = run_batch([archive], tmp_path / "out", BatchOptions(case_timeout=1))
    assert resumed.reused >= 1 and resumed.reused + resumed.ran == 3
    assert by_case(tmp_path / "out")["kerberos-delegation-missing"]["status"] == "ok"


# --- planning cases --------------------------------------------------------------------------------------


def test_case_plan_names_and_collisions(tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    for folder in ("A", "b", "summary.json", "archive"):
        (archive / folder).mkdir(parents=True)
    for name in ("A.zip", "B.ZIP", "packed.dat"):
        with zipfile.ZipFile(archive / name, "w") as packed:
            packed.writestr("x.txt", "x")
    (archive / "fake.zip").write_text("not an archive", encoding="utf-8")
    (archive / "index.txt").write_text("loose", encoding="utf-8")
    (archive / "dangling").symlink_to(tmp_path / "nowhere")
    outdir = archive / "out"
    outdir.mkdir()

    cases = plan_cases([archive], exclude=[outdir])

    names = {case.name: case for case in cases}
    assert list(names) == [
        "A", "A.zip", "B", "archive", "b~2", "dangling", "packed.dat", "summary.json~2", "archive~2"
    ]  # fmt: skip
    assert names["A"].paths == (archive / "A",) and names["A.zip"].archive == archive / "A.zip"
    assert names["B"].archive == archive / "B.ZIP"
    assert names["b~2"].paths == (archive / "b",)  # 'b' and 'B' are one folder on Windows and macOS
    assert names["packed.dat"].archive is not None  # an archive by content, not by name
    assert names["archive~2"].paths == (archive / "fake.zip", archive / "index.txt")  # the loose files
    assert names["dangling"].skip_reason and not names["dangling"].paths
    assert len({name.casefold() for name in names}) == len(names)


def test_output_inside_a_case_is_refused(tmp_path: Path) -> None:
    (tmp_path / "archive" / "case1").mkdir(parents=True)
    with pytest.raises(InputError, match="inside the input"):
        plan_cases([tmp_path / "archive"], exclude=[tmp_path / "archive" / "case1" / "out"])
    with pytest.raises(InputError, match="no such file"):
        plan_cases([tmp_path / "missing"])


def _bundle_files(small_bundles: Path, scenario: str) -> dict[str, bytes]:
    """A small bundle's files by their path in it (from its folder, or from its zip)."""
    folder = small_bundles / scenario
    if folder.is_dir():
        return {
            p.relative_to(small_bundles).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*.evtx"))
        }
    with zipfile.ZipFile(small_bundles / f"{scenario}.zip") as packed:
        return {name: packed.read(name) for name in packed.namelist() if name.endswith(".evtx")}


def test_every_archive_kind_is_a_case_of_its_own(small_bundles: Path, tmp_path: Path) -> None:
    """7z, CAB, tar and compressed tars are bundles like zips: each is a case, named without its
    suffix, never lumped with the folder's loose logs (two customers' bundles analysed as one).
    A single compressed log (System.evtx.gz) stays a loose log of the folder's own case."""
    secure = _bundle_files(small_bundles, "secure-channel-broken")
    kerberos = _bundle_files(small_bundles, "kerberos-delegation-missing")
    archive = tmp_path / "archive"
    archive.mkdir()
    seven_zip(archive / "cust-a.7z", secure)
    tar_gz(archive / "cust-b.tar.gz", kerberos)
    (archive / "cust-c.CAB").write_bytes(cab_bytes({n.replace("/", "\\"): b for n, b in secure.items()}))
    with tarfile.open(archive / "cust-d.tar.xz", "w:xz") as packed:
        for name, content in kerberos.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            packed.addfile(info, io.BytesIO(content))
    (archive / "cust-e.rar").write_bytes(b"Rar!\x1a\x07\x00" + b"\x00" * 64)
    (archive / "cust-f.tgz").write_bytes(b"\x1f\x8b\x08\x00" + b"\xff" * 64)  # damaged
    one_log = next(name for name in secure if name.endswith("HV02/System.evtx"))
    (archive / "HV02-System.evtx.gz").write_bytes(gzip.compress(secure[one_log]))

    planned = {case.name: case for case in plan_cases([archive])}
    assert set(planned) == {"cust-a", "cust-b", "cust-c", "cust-d", "cust-e", "cust-f", "archive"}
    assert (
        planned["archive"].paths == (archive / "HV02-System.evtx.gz",) and planned["archive"].archive is None
    )
    assert all(planned[f"cust-{x}"].archive is not None for x in "abcdef")

    result = run_batch([archive], tmp_path / "out", BatchOptions(workers=2, formats=("json",)))
    rows = {row["case"]: row for row in result.rows}
    causes = {name: {f["cause"] for f in row["findings"]} for name, row in rows.items()}
    assert causes["cust-a"] == causes["cust-c"] == {"secure-channel-broken"}
    assert causes["cust-b"] == causes["cust-d"] == {"kerberos-delegation-missing"}
    assert rows["archive"]["status"] == "ok" and rows["archive"]["records"] > 0
    assert rows["cust-e"]["status"] == "failed" and "RAR archive, not supported" in rows["cust-e"]["reason"]
    assert rows["cust-f"]["status"] == "failed" and "archive cannot be read" in rows["cust-f"]["reason"]


def test_loose_file_and_archive_arguments(small_bundles: Path, tmp_path: Path) -> None:
    logs = sorted((small_bundles / "secure-channel-broken" / "HV01").glob("*.evtx"))
    zipped = small_bundles / "kerberos-delegation-missing.zip"
    cases = plan_cases([zipped, *logs, zipped])
    assert [(c.name, c.paths) for c in cases] == [
        ("kerberos-delegation-missing", (zipped,)),
        ("HV01", tuple(logs)),
    ]


@pytest.mark.skipif(sys.platform == "win32", reason="the output folder lock uses fcntl")
def test_one_batch_at_a_time_per_output_folder(small_bundles: Path, tmp_path: Path) -> None:
    import fcntl

    outdir = tmp_path / "out"
    outdir.mkdir()
    with (outdir / ".evtxcorr-batch.lock").open("a") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(InputError, match="another evtxcorr batch is writing to"):
            run_batch([small_bundles], outdir)
    assert not (outdir / "summary.json").exists()


def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    result = CliRunner().invoke(cli, ["batch", str(tmp_path / "empty"), "-o", str(tmp_path / "out")])
    assert result.exit_code == 1 and "Error: no case found" in result.output
    result = CliRunner().invoke(cli, ["batch", str(tmp_path), "-o", str(tmp_path / "o"), "-w", "2",
                                      "--scheduler", "tcp://127.0.0.1:1"])  # fmt: skip
    assert result.exit_code == 2 and "--workers" in result.output
    help_text = CliRunner().invoke(cli, ["batch", "--help"]).output
    assert "evtxcorr batch " in help_text and "--scheduler" in help_text


class _Terminal(io.StringIO):
    """stderr as a terminal would be (tqdm draws only there)."""

    def isatty(self) -> bool:
        return True


def test_the_case_bar_counts_cases_on_a_terminal_only(monkeypatch: pytest.MonkeyPatch) -> None:
    screen = _Terminal()
    monkeypatch.setattr(sys, "stderr", screen)
    bar = CaseBar()
    bar.start(5, {"ok": 1, "failed": 0, "skipped": 1})  # two cases done by an earlier run
    for status in ("ok", "failed", "skipped"):
        bar.update(status)
    bar.close()
    shown = screen.getvalue()
    assert "5/5" in shown
    assert re.search(r"done 2, failed 1, skipped 2, \d+\.\d/min", shown), shown  # three ran now

    piped = io.StringIO()  # a pipe or a log file: no bar at all
    monkeypatch.setattr(sys, "stderr", piped)
    quiet = CaseBar()
    quiet.start(1, {})
    quiet.update("ok")
    quiet.close()
    assert piped.getvalue() == ""


# --- the case process --------------------------------------------------------------------------------------


def test_a_bug_in_a_case_becomes_a_failed_result(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr("evtxcorr.batch.child.analyze", broken)
    (tmp_path / "job.json").write_text(json.dumps({"paths": [str(tmp_path)], "formats": ["json"]}))
    run(tmp_path)
    result = json.loads((tmp_path / RESULT_FILE).read_text(encoding="utf-8"))
    assert result["status"] == "failed"
    assert result["reason"] == "internal error: ZeroDivisionError: division by zero"
    assert "Traceback" in result["detail"]


def test_cluster_scoped_findings_list_their_hosts() -> None:
    one = {"cause": "c", "host": "HV01.contoso.local", "incident": "I1", "confidence": 0.9, "title": "t"}
    assert summary_finding(one) == {
        "cause": "c",
        "host": "HV01.contoso.local",
        "incident": "I1",
        "confidence": 0.9,
        "kind": "cause",
        "certainty": None,
        "confidence_range": None,
    }
    cluster = {"cause": "c", "host": None, "hosts": ["HV01", "HV02"], "incident": "I1", "confidence": 0.9}
    assert summary_finding(cluster)["host"] == "HV01, HV02"


def _slow_job(small_bundles: Path, tmp_path: Path) -> dict:
    slow = _slow_case(small_bundles, tmp_path / "slow")
    return {"case": "slow", "paths": [str(slow)], "archive": None, "formats": ["json"]}


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc to find the case process")
def test_a_case_whose_process_dies_fails_alone(small_bundles: Path, tmp_path: Path) -> None:
    """A crash of the case's process (a native fault, the OOM killer) is that case's failure."""
    work = tmp_path / "work"
    work.mkdir()
    job = _slow_job(small_bundles, tmp_path)
    results: list[dict] = []
    runner = threading.Thread(target=lambda: results.append(run_case(job, work_root=work)))
    runner.start()
    deadline = time.monotonic() + 60
    while not _live_case_processes() and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in _live_case_processes():
        os.kill(pid, signal.SIGKILL)
    runner.join(60)
    assert results and results[0]["status"] == "failed"
    assert (
        results[0]["reason"] == "the case's process was killed by SIGKILL (out of memory?) before it finished"
    )
    assert list(work.iterdir()) == []


def test_a_stop_request_stops_a_running_case(small_bundles: Path, tmp_path: Path) -> None:
    """How a case on a Dask worker is stopped when the batch is interrupted: it polls a stop flag."""
    work = tmp_path / "work"
    work.mkdir()
    asked = time.monotonic() + 1.5
    children = Children(should_stop=lambda: time.monotonic() > asked)
    result = run_case(_slow_job(small_bundles, tmp_path), work_root=work, children=children)
    assert (result["status"], result["reason"]) == ("failed", "interrupted before it finished")
    assert list(work.iterdir()) == []
    assert _live_case_processes() == []
