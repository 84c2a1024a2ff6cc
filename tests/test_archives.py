"""Archives customers send (zip, tar.gz, .gz, 7z, CAB), each read with the same per-run limits, or
skipped with a reason naming the format; zip bombs made of overlapping entries are refused unread."""

from __future__ import annotations

import bz2
import gzip
import io
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest
from archive_builders import SAMPLE, cab_bytes, overlapping_zip, run_discover, seven_zip, tar_gz

from evtxcorr.discover import ArchiveLimits
from evtxcorr.discover.sniff import sniff_bytes


@pytest.fixture()
def evtx_bytes(corpus_dir: Path) -> bytes:
    return (corpus_dir / SAMPLE).read_bytes()


_run = run_discover


def _gzip_named(path: Path, name: str, data: bytes) -> Path:
    with path.open("wb") as raw, gzip.GzipFile(filename=name, mode="wb", fileobj=raw, mtime=0) as packed:
        packed.write(data)
    return path


@pytest.mark.parametrize(
    ("head", "kind"),
    [
        (b"7z\xbc\xaf\x27\x1c\x00\x04", "7z"),
        (b"MSCF\x00\x00\x00\x00", "cab"),
        (gzip.compress(b"x", mtime=0), "gzip"),  # mtime 0: one test id on every xdist worker
        (bz2.compress(b"x"), "bzip2"),
        (b"\xfd7zXZ\x00\x00", "xz"),
        (b"\x00" * 257 + b"ustar\x0000", "tar"),
        (b"Rar!\x1a\x07\x01\x00", "rar"),
    ],
)
def test_archive_formats_are_sniffed_by_content(head: bytes, kind: str) -> None:
    assert sniff_bytes(head) == kind


def test_tar_gz_members_are_read_links_skipped(tmp_path: Path, evtx_bytes: bytes) -> None:
    bundle = tar_gz(tmp_path / "case.bin", {"HV01/System.evtx": evtx_bytes, "../up.evtx": evtx_bytes},
                    links={"HV01/link.evtx": "/etc/passwd"})  # fmt: skip
    sources, ledger, entries = _run([bundle], tmp_path)
    assert sorted(s.display for s in sources) == [f"{bundle}!../up.evtx", f"{bundle}!HV01/System.evtx"]
    assert all(s.path.read_bytes() == evtx_bytes for s in sources)
    assert (
        entries[str(bundle)].format == "gzip" and entries[str(bundle)].reason == "gzip archive: 3 member(s)"
    )
    assert entries[f"{bundle}!HV01/link.evtx"].reason == "link in the archive, not followed"
    assert any("outside the archive" in w for w in ledger.warnings)
    work = (tmp_path / "work").resolve()
    assert all(s.path.resolve().is_relative_to(work) for s in sources)


def test_single_gz_is_one_member_named_from_its_header(tmp_path: Path, evtx_bytes: bytes) -> None:
    packed = _gzip_named(tmp_path / "upload.gz", "HV02_evt_System.evtx", evtx_bytes)
    sources, _, _ = _run([packed], tmp_path)
    assert [s.display for s in sources] == [f"{packed}!HV02_evt_System.evtx"]
    assert sources[0].host_hint == "HV02" and sources[0].path.read_bytes() == evtx_bytes


def test_truncated_gz_is_skipped_with_the_reason(tmp_path: Path, evtx_bytes: bytes) -> None:
    whole = gzip.compress(evtx_bytes)
    cut = tmp_path / "System.evtx.gz"
    cut.write_bytes(whole[: len(whole) // 2])
    sources, _, entries = _run([cut], tmp_path)
    assert sources == []
    member = entries[f"{cut}!System.evtx"]
    assert member.status == "skipped" and "cannot extract" in member.reason
    assert "truncated gzip" in entries[str(cut)].reason


def test_7z_members_are_read(tmp_path: Path, evtx_bytes: bytes) -> None:
    bundle = seven_zip(tmp_path / "case.7z", {"HV01/System.evtx": evtx_bytes, "notes.txt": b"hello\n"})
    sources, _, entries = _run([bundle], tmp_path)
    assert [s.display for s in sources] == [f"{bundle}!HV01/System.evtx"]
    assert sources[0].path.read_bytes() == evtx_bytes
    assert entries[f"{bundle}!notes.txt"].reason == ".csv/.txt export copy, not analysed in this version"


@pytest.mark.parametrize("header", [True, False])
def test_encrypted_7z_is_skipped_with_the_reason(tmp_path: Path, evtx_bytes: bytes, header: bool) -> None:
    bundle = seven_zip(tmp_path / "case.7z", {"System.evtx": evtx_bytes}, password="secret", header=header)
    sources, _, entries = _run([bundle], tmp_path)
    assert sources == [] and entries[str(bundle)].reason == "encrypted 7z archive, cannot be read"


@pytest.mark.parametrize("method", ["mszip", "stored"])
def test_cab_members_are_read(tmp_path: Path, evtx_bytes: bytes, method: str) -> None:
    bundle = tmp_path / "diag.cab"
    bundle.write_bytes(cab_bytes({"Logs\\System.evtx": evtx_bytes, "readme.txt": b"x" * 70000}, method))
    sources, _, entries = _run([bundle], tmp_path)
    assert [s.display for s in sources] == [f"{bundle}!Logs/System.evtx"]
    assert sources[0].path.read_bytes() == evtx_bytes
    assert entries[str(bundle)].reason == "CAB archive: 2 member(s)"


def test_our_cab_writer_agrees_with_cabextract(tmp_path: Path, evtx_bytes: bytes) -> None:
    if not shutil.which("cabextract"):
        pytest.skip("cabextract not installed")
    bundle = tmp_path / "diag.cab"
    bundle.write_bytes(cab_bytes({"System.evtx": evtx_bytes}))
    subprocess.run(["cabextract", "-q", "-d", str(tmp_path / "out"), str(bundle)], check=True)
    assert (tmp_path / "out" / "System.evtx").read_bytes() == evtx_bytes


def test_lzx_cab_is_skipped_naming_the_method(tmp_path: Path, evtx_bytes: bytes) -> None:
    bundle = tmp_path / "diag.cab"
    bundle.write_bytes(cab_bytes({"System.evtx": evtx_bytes}, "lzx"))
    sources, _, entries = _run([bundle], tmp_path)
    assert sources == []
    assert entries[f"{bundle}!System.evtx"].reason.startswith("CAB folder compressed with LZX, not supported")


def test_rar_is_skipped_naming_the_format(tmp_path: Path) -> None:
    rar = tmp_path / "logs.rar"
    rar.write_bytes(b"Rar!\x1a\x07\x01\x00" + b"\x00" * 64)
    _, _, entries = _run([rar], tmp_path)
    assert entries[str(rar)].reason.startswith("RAR archive, not supported")


def test_overlapping_zip_entries_are_refused_unread(tmp_path: Path) -> None:
    bundle = overlapping_zip(tmp_path / "bomb.zip", b"\x00" * 200_000, copies=50)
    with zipfile.ZipFile(bundle) as archive:  # the bomb is a valid zip: every entry reads
        assert len(archive.infolist()) == 50 and len(archive.read(archive.infolist()[7])) == 200_000
    sources, ledger, entries = _run([bundle], tmp_path)
    assert sources == [] and len(ledger.entries) == 1
    assert entries[str(bundle)].status == "skipped"
    assert entries[str(bundle)].reason.startswith("overlapping zip entries")
    assert not any((tmp_path / "work").rglob("member-*"))


def test_limits_hold_for_the_whole_run_not_per_archive(tmp_path: Path, evtx_bytes: bytes) -> None:
    first = tmp_path / "a.zip"
    second = tmp_path / "b.zip"
    for path in (first, second):
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("System.evtx", evtx_bytes)
    limits = ArchiveLimits(max_total=len(evtx_bytes) + 10)
    sources, _, entries = _run([first, second], tmp_path, limits=limits)
    assert [s.display for s in sources] == [f"{first}!System.evtx"]
    assert "run's total limit" in entries[f"{second}!System.evtx"].reason
    limits = ArchiveLimits(max_members=3)
    tar_gz(tmp_path / "c.tgz", {f"f{i}.txt": b"x" for i in range(3)})
    _, _, entries = _run([first, tmp_path / "c.tgz"], tmp_path, limits=limits)
    assert entries[f"{tmp_path / 'c.tgz'}!f2.txt"].reason.startswith("the inputs hold over 3 archive members")


def test_cpu_limit_skips_what_is_left(tmp_path: Path, evtx_bytes: bytes) -> None:
    bundle = tmp_path / "a.zip"
    with zipfile.ZipFile(bundle, "w") as archive:
        archive.writestr("System.evtx", evtx_bytes)
    _, _, entries = _run([bundle], tmp_path, limits=ArchiveLimits(max_cpu_s=0))
    assert "CPU limit" in entries[f"{bundle}!System.evtx"].reason


def test_nested_archive_formats(tmp_path: Path, evtx_bytes: bytes) -> None:
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as archive:
        archive.writestr("HV03/System.evtx", evtx_bytes)
    outer = tar_gz(tmp_path / "all.tar.gz", {"HV03.zip": inner.getvalue()})
    sources, _, _ = _run([outer], tmp_path)
    assert [s.display for s in sources] == [f"{outer}!HV03.zip!HV03/System.evtx"]
