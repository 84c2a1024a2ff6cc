"""output.py: -o checked before any work, inputs never overwritten, reports written all-or-nothing,
report modes, and real OS failures (read-only and full file systems, oversized writes)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from evtxcorr.errors import OutputError
from evtxcorr.output import plan_outputs, write_reports


def test_plan_by_suffix_folder_and_format(tmp_path: Path) -> None:
    assert plan_outputs(None, ()) == {"md": None}
    assert plan_outputs(tmp_path / "x.json", ()) == {"json": tmp_path / "x.json"}
    assert plan_outputs(tmp_path / "x.htm", ("html",)) == {"html": tmp_path / "x.htm"}
    assert set(plan_outputs(tmp_path, ())) == {"html", "md", "json"}
    assert plan_outputs(f"{tmp_path}/v1.2/", ("md",)) == {"md": tmp_path / "v1.2" / "evtxcorr-report.md"}
    assert plan_outputs(tmp_path / "dir", ("html",)) == {"html": tmp_path / "dir" / "evtxcorr-report.html"}


@pytest.mark.parametrize(
    ("name", "formats", "message"),
    [
        ("report.txt", (), "has no report suffix"),
        ("x.html", ("json",), "--format json does not match -o"),
        ("x.json", ("html", "md"), "is one file"),
    ],
)
def test_bad_output_names_are_refused_and_nothing_is_created(
    tmp_path: Path, name: str, formats: tuple[str, ...], message: str
) -> None:
    with pytest.raises(OutputError, match=message):
        plan_outputs(tmp_path / name, formats)
    assert list(tmp_path.iterdir()) == []


def test_existing_file_with_unknown_suffix_is_refused(tmp_path: Path) -> None:
    bundle = tmp_path / "bundle.zip"
    bundle.write_bytes(b"PK\x05\x06" + b"\x00" * 18)
    with pytest.raises(OutputError, match="is an existing file that is not a report"):
        plan_outputs(bundle, ())


def test_device_is_refused() -> None:
    with pytest.raises(OutputError, match="not a regular file or folder"):
        plan_outputs(Path("/dev/full"), ())


def test_inputs_are_never_outputs(tmp_path: Path) -> None:
    same = tmp_path / "same"
    same.mkdir()
    log = same / "System.md"  # an event log with a report's name
    log.write_bytes(b"ElfFile\x00")
    with pytest.raises(OutputError, match="is an input"):
        plan_outputs(log, (), inputs=[log])
    with pytest.raises(OutputError, match="inside the input folder"):
        plan_outputs(log, (), inputs=[same])
    with pytest.raises(OutputError, match="inside the input folder"):
        plan_outputs(same, (), inputs=[same])
    with pytest.raises(OutputError, match="inside the input folder"):
        plan_outputs(same / "new.html", (), inputs=[same])
    linked = tmp_path / "link.md"
    os.link(log, linked)
    with pytest.raises(OutputError, match="is an input"):
        plan_outputs(linked, (), inputs=[log])
    assert plan_outputs(tmp_path / "out.md", (), inputs=[same]) == {"md": tmp_path / "out.md"}


def test_parent_that_is_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="is not a folder"):
        plan_outputs(tmp_path / "file" / "r.html", ())


def test_modes_new_files_follow_the_umask_replaced_ones_keep_theirs(tmp_path: Path) -> None:
    old = tmp_path / "old.md"
    old.write_text("old")
    old.chmod(0o640)
    previous = os.umask(0o027)
    try:
        write_reports({old: "new", tmp_path / "new.md": "fresh"})
    finally:
        os.umask(previous)
    assert old.read_text() == "new" and (old.stat().st_mode & 0o777) == 0o640
    assert ((tmp_path / "new.md").stat().st_mode & 0o777) == 0o640  # 0666 less umask 027
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new.md", "old.md"]


def test_oversized_write_leaves_every_old_report(tmp_path: Path) -> None:
    """A write the OS refuses (RLIMIT_FSIZE: EFBIG, like ENOSPC a failure part way through) keeps all
    the old reports and leaves no temporary file: never a new HTML beside an old JSON."""
    for name in ("r.html", "r.md", "r.json"):
        (tmp_path / name).write_text(f"old {name}")
    script = f"""
import resource, signal, sys
from pathlib import Path
from evtxcorr.output import write_reports
from evtxcorr.errors import OutputError
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
d = Path({str(tmp_path)!r})
try:
    write_reports({{d / "r.html": "h" * 100, d / "r.md": "m" * 100, d / "r.json": "j" * 10000}})
except OutputError as exc:
    print(exc)
    sys.exit(3)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 3, done.stderr
    assert done.stdout.startswith(f"cannot write {tmp_path / 'r.json'}: File too large")
    assert {p.name: p.read_text() for p in tmp_path.iterdir()} == {
        "r.html": "old r.html",
        "r.md": "old r.md",
        "r.json": "old r.json",
    }


def _can_mount() -> bool:
    if not shutil.which("unshare") or os.geteuid() != 0:
        return False
    probe = subprocess.run(
        ["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"], capture_output=True
    )
    return probe.returncode == 0


needs_mount = pytest.mark.skipif(not _can_mount(), reason="needs root and mount namespaces (unshare -m)")


@needs_mount
def test_read_only_file_system_is_found_before_the_run(tmp_path: Path) -> None:
    target = tmp_path / "ro"
    target.mkdir()
    script = f"""
mount -t tmpfs -o ro,size=64k tmpfs {target}
{sys.executable} -c 'from evtxcorr.output import plan_outputs; plan_outputs("{target}/r.html", ())'
"""
    done = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert f"cannot write reports into {target}: Read-only file system" in done.stderr


@needs_mount
def test_full_disk_keeps_old_reports(tmp_path: Path) -> None:
    target = tmp_path / "small"
    target.mkdir()
    script = f"""
mount -t tmpfs -o size=32k tmpfs {target}
for f in r.html r.md r.json; do echo old > {target}/$f; done
{sys.executable} - <<'EOF'
from pathlib import Path
from evtxcorr.output import write_reports
from evtxcorr.errors import OutputError
d = Path("{target}")
try:
    write_reports({{d / "r.html": "h" * 8000, d / "r.md": "m" * 8000, d / "r.json": "j" * 200000}})
except OutputError as exc:
    print(exc)
EOF
cat {target}/r.html {target}/r.md {target}/r.json
ls -A {target}
"""
    done = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=60)
    lines = done.stdout.splitlines()
    assert lines[0].endswith("No space left on device; no report written"), done.stdout + done.stderr
    assert lines[1:4] == ["old", "old", "old"]
    assert lines[4:] == ["r.html", "r.json", "r.md"]
