"""Zip archives, nested ones too: members are checked, then streamed out under generated names.

A member's own path never reaches the file system (no zip-slip): it is only used in display names
('bundle.zip!HV01/System.evtx'). Symbolic links, encrypted members, oversized members, suspicious
compression ratios and excess nesting are skipped with a reason instead of extracted.
"""

from __future__ import annotations

import stat
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

GiB = 1024**3
MiB = 1024**2
READ_BLOCK = 1 * MiB


@dataclass(frozen=True)
class ArchiveLimits:
    """Bounds on what one top-level archive may expand to."""

    max_total: int = 4 * GiB  # all members of one top-level archive, nested ones included
    max_entry: int = 2 * GiB  # one member
    max_ratio: float = 200.0  # expanded / compressed, checked once a member passes ratio_floor
    ratio_floor: int = 1 * MiB  # small members (mostly-empty logs) compress very well legitimately
    max_members: int = 100_000


class LimitExceeded(Exception):
    """A member would expand past a limit: skip it."""


@dataclass
class Budget:
    """Bytes left for one top-level archive."""

    remaining: int


@dataclass(frozen=True)
class Member:
    """One archive member, before extraction: its name and why it must be skipped (if so)."""

    info: zipfile.ZipInfo
    name: str
    skip_reason: str | None


def _is_symlink(info: zipfile.ZipInfo) -> bool:
    return info.create_system == 3 and stat.S_ISLNK(info.external_attr >> 16)


def check_member(info: zipfile.ZipInfo, limits: ArchiveLimits) -> str | None:
    """Why `info` must not be extracted, or None."""
    if _is_symlink(info):
        return "symbolic link in the archive, not followed"
    if info.flag_bits & 0x1:
        return "encrypted archive member, cannot be read"
    if info.file_size > limits.max_entry:
        return f"expands to {info.file_size} bytes, over the per-member limit of {limits.max_entry}"
    if info.compress_type not in (
        zipfile.ZIP_STORED,
        zipfile.ZIP_DEFLATED,
        zipfile.ZIP_BZIP2,
        zipfile.ZIP_LZMA,
    ):
        return f"unsupported compression method {info.compress_type}"
    if info.file_size > limits.ratio_floor and info.file_size > limits.max_ratio * max(info.compress_size, 1):
        return f"compression ratio over {limits.max_ratio:g} (possible zip bomb), not extracted"
    return None


def members(archive: zipfile.ZipFile, limits: ArchiveLimits) -> Iterator[Member]:
    """File members in name order (directories left out), each with its skip reason if any."""
    infos = sorted((i for i in archive.infolist() if not i.is_dir()), key=lambda i: i.filename)
    for count, info in enumerate(infos):
        if count >= limits.max_members:
            yield Member(info, info.filename, f"archive holds over {limits.max_members} members")
            continue
        yield Member(info, info.filename, check_member(info, limits))


def extract(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, limits: ArchiveLimits, budget: Budget
) -> Path:
    """Stream one member to `target` (a generated name, never the member's), enforcing the limits on
    the bytes actually produced (headers can lie). Refuses to overwrite. Raises LimitExceeded,
    zipfile.BadZipFile, OSError..."""
    written = 0
    dst = target.open("xb")  # never onto an existing file
    try:
        with archive.open(info) as src, dst:
            while block := src.read(READ_BLOCK):
                written += len(block)
                if written > limits.max_entry:
                    raise LimitExceeded(f"expands past the per-member limit of {limits.max_entry} bytes")
                if written > budget.remaining:
                    raise LimitExceeded(f"archive expands past the total limit of {limits.max_total} bytes")
                if written > limits.ratio_floor and written > limits.max_ratio * max(info.compress_size, 1):
                    raise LimitExceeded(f"compression ratio over {limits.max_ratio:g} (possible zip bomb)")
                dst.write(block)
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    budget.remaining -= written
    return target
