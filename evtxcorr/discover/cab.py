"""Microsoft Cabinet (.cab) files, as diagnostic packages ship them: stored and MSZIP folders.

Layout from Microsoft's Cabinet File Format specification (CFHEADER, CFFOLDER, CFFILE, CFDATA). Each
folder is one compressed stream, decompressed once, front to back, block by block (an MSZIP block
is raw deflate prefixed 'CK', using the previous block's output as its dictionary); its files are
cut from that stream into Sinks. LZX and Quantum folders are skipped with a reason that names the
method (no maintained Python decoder; `expand.exe` or `cabextract` unpack them). Written here rather
than taken from PyPI: `cabarchive` (MSZIP only) holds the whole archive and every folder in memory,
which a hostile CAB turns into gigabytes.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from evtxcorr.discover.archive import ArchiveError, Budget, LimitExceeded, Listing, Member, NewTarget, Sink

HEADER = struct.Struct("<4sIIIIIBBHHHHH")  # signature .. iCabinet (36 bytes)
FOLDER = struct.Struct("<IHH")
FILE = struct.Struct("<IIHHHH")
DATA = struct.Struct("<IHH")
FLAG_PREV, FLAG_NEXT, FLAG_RESERVE = 0x1, 0x2, 0x4
ATTR_UTF8 = 0x80
METHODS = {0: "stored", 1: "MSZIP", 2: "Quantum", 3: "LZX"}
CONTINUED = (0xFFFD, 0xFFFE, 0xFFFF)  # file continued from/to another cabinet of a set
MSZIP_BLOCK = 32768


@dataclass
class _Folder:
    data_offset: int
    blocks: int
    method: str


@dataclass
class _File:
    member: Member
    offset: int  # in the folder's uncompressed stream
    folder: int


def _cstring(fh: BinaryIO, limit: int = 1024) -> bytes:
    out = bytearray()
    while len(out) < limit:
        byte = fh.read(1)
        if not byte or byte == b"\x00":
            return bytes(out)
        out += byte
    raise ArchiveError("damaged CAB: a name is not terminated")


def _unpack(fh: BinaryIO, layout: struct.Struct) -> tuple:
    raw = fh.read(layout.size)
    if len(raw) != layout.size:
        raise ArchiveError("damaged or truncated CAB file")
    return layout.unpack(raw)


def _directory(fh: BinaryIO) -> tuple[list[_Folder], list[_File], int]:
    """Folders, files and the per-block reserve size, from the CAB's header and directory."""
    sig, _, _, _, files_at, _, minor, major, nfolders, nfiles, flags, _, _ = _unpack(fh, HEADER)
    if sig != b"MSCF":
        raise ArchiveError("not a CAB file")
    if (major, minor) != (1, 3):
        raise ArchiveError(f"CAB format version {major}.{minor} not supported")
    folder_reserve = block_reserve = 0
    if flags & FLAG_RESERVE:
        header_reserve, folder_reserve, block_reserve = _unpack(fh, struct.Struct("<HBB"))
        fh.seek(header_reserve, 1)
    for flag in (FLAG_PREV, FLAG_NEXT):
        if flags & flag:
            _cstring(fh), _cstring(fh)  # cabinet and disk names of the set
    folders = []
    for _ in range(nfolders):
        offset, blocks, method = _unpack(fh, FOLDER)
        fh.seek(folder_reserve, 1)
        folders.append(_Folder(offset, blocks, METHODS.get(method & 0x0F, f"method {method & 0x0F}")))
    fh.seek(files_at)
    files = []
    for _ in range(nfiles):
        size, offset, folder, _, _, attrs = _unpack(fh, FILE)
        raw = _cstring(fh, 256)
        name = raw.decode("utf-8" if attrs & ATTR_UTF8 else "cp1252", errors="replace").replace("\\", "/")
        files.append(_File(Member(name, size), offset, folder))
    return folders, files, block_reserve


def _skip_reason(item: _File, folders: list[_Folder], budget: Budget) -> str | None:
    if item.folder in CONTINUED:
        return "continued in another cabinet of a multi-part set, not extracted"
    if item.folder >= len(folders):
        return "damaged CAB entry (no such folder), not extracted"
    method = folders[item.folder].method
    if method not in ("stored", "MSZIP"):
        return (
            f"CAB folder compressed with {method}, not supported (unpack it with expand.exe or "
            "cabextract and give the folder)"
        )
    if item.member.size > budget.limits.max_entry:
        return f"expands to {item.member.size} bytes, over the per-member limit of {budget.limits.max_entry}"
    return None


def _blocks(fh: BinaryIO, folder: _Folder, reserve: int) -> bytes:
    """The folder's uncompressed stream, one CFDATA block at a time."""
    fh.seek(folder.data_offset)
    window = b""
    for _ in range(folder.blocks):
        _, packed, unpacked = _unpack(fh, DATA)
        fh.seek(reserve, 1)
        data = fh.read(packed)
        if len(data) != packed:
            raise ArchiveError("damaged or truncated CAB file (a data block is cut short)")
        if folder.method == "MSZIP":
            if data[:2] != b"CK":
                raise ArchiveError("damaged CAB: an MSZIP block lacks its 'CK' signature")
            try:
                inflater = (
                    zlib.decompressobj(-zlib.MAX_WBITS, zdict=window) if window else zlib.decompressobj(-15)
                )
                data = inflater.decompress(data[2:], MSZIP_BLOCK + 1)
            except zlib.error as exc:
                raise ArchiveError(f"damaged CAB: MSZIP block does not inflate ({exc})") from None
            window = data
        if len(data) != unpacked or unpacked > MSZIP_BLOCK:
            raise ArchiveError("damaged CAB: a data block does not expand to its declared size")
        yield data


def _extract_folder(fh: BinaryIO, folder: _Folder, items: list[_File], reserve: int, budget: Budget,
                    new_target: NewTarget) -> None:  # fmt: skip
    """Cut the folder's files (sorted by offset, not overlapping) out of its stream in one pass."""
    pending = sorted(items, key=lambda f: f.offset)
    for first, second in zip(pending, pending[1:], strict=False):
        if second.offset < first.offset + first.member.size:
            raise ArchiveError(
                "overlapping CAB entries (files sharing bytes: an archive bomb), not extracted"
            )
    position, index, sink = 0, 0, None
    try:
        for block in _blocks(fh, folder, reserve):
            budget.check_cpu()
            start, position = position, position + len(block)
            while index < len(pending) and start < position:
                item = pending[index]
                end = item.offset + item.member.size
                if sink is None and item.offset < position:
                    sink = Sink(new_target(), budget)
                    item.member.path = sink.target
                if sink is not None:
                    sink.write(block[max(item.offset, start) - start : min(end, position) - start])
                    if end <= position:
                        sink.__exit__(None, None, None)
                        sink, index = None, index + 1
                        continue
                break
            if index >= len(pending):
                return
        if index < len(pending):
            raise ArchiveError("damaged CAB: a file runs past the end of its folder")
    except BaseException:
        if sink is not None:
            sink.__exit__(LimitExceeded, None, None)
            pending[index].member.path = None
        raise


def read_cab(path: Path, budget: Budget, new_target: NewTarget) -> Listing:
    listing = Listing()
    with path.open("rb") as fh:
        folders, files, reserve = _directory(fh)
        by_folder: dict[int, list[_File]] = {}
        for item in sorted(files, key=lambda f: f.member.name):
            listing.members.append(item.member)
            item.member.skip_reason = (
                budget.take_member() or budget.cpu_reason() or _skip_reason(item, folders, budget)
            )
            if item.member.skip_reason is None:
                by_folder.setdefault(item.folder, []).append(item)
        for number, items in sorted(by_folder.items()):
            try:
                _extract_folder(fh, folders[number], items, reserve, budget, new_target)
            except (LimitExceeded, ArchiveError) as exc:
                for item in items:
                    if item.member.path is None and item.member.skip_reason is None:
                        item.member.skip_reason = str(exc)
                if isinstance(exc, ArchiveError):
                    listing.problem = str(exc)
    return listing
