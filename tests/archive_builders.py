"""Archives for the tests, built in code: tar/gzip with the standard library, 7z with py7zr, and CAB
with the small writer below (one folder, stored or MSZIP), whose output cabextract (libmspack)
reads back (tests/test_archives.py checks that when cabextract is installed)."""

from __future__ import annotations

import io
import struct
import tarfile
import zipfile
import zlib
from pathlib import Path

from evtxcorr.discover import discover
from evtxcorr.ledger import InputEntry, Ledger
from evtxcorr.model import Source

SAMPLE = "Application_no_crc32.evtx"  # the real log of the shared corpus the discover tests pack


def run_discover(paths, tmp_path: Path, **kwargs) -> tuple[list[Source], Ledger, dict[str, InputEntry]]:  # type: ignore[no-untyped-def]
    """discover() into tmp_path/work: the sources, the ledger, and its entries by display path."""
    ledger = Ledger()
    sources = discover([Path(p) for p in paths], ledger, work_dir=tmp_path / "work", **kwargs)
    return sources, ledger, {e.path: e for e in ledger.entries}


CAB_BLOCK = 32768
CAB_METHODS = {"stored": 0, "mszip": 1, "lzx": 3 | (15 << 8)}


def cab_bytes(files: dict[str, bytes], method: str = "mszip") -> bytes:
    """A single-folder cabinet holding `files` in order (LZX: the header only says so; its data is
    stored, enough to test that such folders are refused before any decoding)."""
    stream = b"".join(files.values())
    blocks = [stream[i : i + CAB_BLOCK] for i in range(0, len(stream), CAB_BLOCK)] or [b""]
    data, previous = b"", b""
    for block in blocks:
        if method == "mszip":
            packer = (
                zlib.compressobj(9, zlib.DEFLATED, -15, zdict=previous)
                if previous
                else zlib.compressobj(9, zlib.DEFLATED, -15)
            )
            packed = b"CK" + packer.compress(block) + packer.flush()
            previous = block
        else:
            packed = block
        data += struct.pack("<IHH", 0, len(packed), len(block)) + packed
    entries, offset = b"", 0
    for name, content in files.items():
        entries += struct.pack("<IIHHHH", len(content), offset, 0, 0x5A21, 0, 0x20) + name.encode() + b"\x00"
        offset += len(content)
    files_at = 36 + 8
    data_at = files_at + len(entries)
    total = data_at + len(data)
    header = struct.pack(
        "<4sIIIIIBBHHHHH", b"MSCF", 0, total, 0, files_at, 0, 3, 1, 1, len(files), 0, 0x1234, 0
    )
    folder = struct.pack("<IHH", data_at, len(blocks), CAB_METHODS[method])
    return header + folder + entries + data


def tar_gz(path: Path, files: dict[str, bytes], links: dict[str, str] | None = None) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            archive.addfile(info)
    return path


def seven_zip(path: Path, files: dict[str, bytes], password: str | None = None, header: bool = False) -> Path:
    """A 7z of `files`; with a password, its data is encrypted (and its listing too when `header`)."""
    import py7zr

    with py7zr.SevenZipFile(path, "w", password=password, header_encryption=header) as archive:
        for name, content in files.items():
            archive.writestr(content, name)
    return path


def overlapping_zip(path: Path, content: bytes, copies: int) -> Path:
    """A zip whose `copies` central-directory entries all point at one local entry, 'm0.evtx' (the
    members share their compressed bytes: the 'overlapping files' zip bomb in its simplest form)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("m0.evtx", content)
    raw = buffer.getvalue()
    central = raw.index(b"PK\x01\x02")
    end = raw.index(b"PK\x05\x06")
    entry = raw[central:end]
    name_len = struct.unpack_from("<H", entry, 28)[0]
    assert name_len  # every copy keeps the one name: zipfile checks it against the local header
    entries = entry * copies
    tail = bytearray(raw[end:])
    struct.pack_into("<HHII", tail, 8, copies, copies, len(entries), central)
    path.write_bytes(raw[:central] + entries + bytes(tail))
    return path
