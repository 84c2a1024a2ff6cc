"""Archives: the limits every format shares, the bounded writer, and zip.

Each reader (zip here, tar/gzip/7z in streams.py, CAB in cab.py) lists an archive's members, decides
which must be skipped and why, and streams the others out under names discover() generates: a
member's own path never reaches the file system (no zip-slip), it only names the member in reports
('bundle.zip!HV01/System.evtx'). Links, encrypted members and special files are skipped with a
reason. Every byte written goes through a Sink that charges one Budget per run (bytes, members, CPU
time), so no archive, nested or not, and no number of archives expands past the run's limits.
"""

from __future__ import annotations

import stat
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

GiB = 1024**3
MiB = 1024**2
READ_BLOCK = 1 * MiB
ZIP_LOCAL_HEADER = 30  # fixed part of a zip local file header


@dataclass(frozen=True)
class ArchiveLimits:
    """Bounds on what all the archives of one run may expand to (nested ones included)."""

    max_total: int = 4 * GiB  # bytes written, all archives of the run together
    max_entry: int = 2 * GiB  # one member
    max_ratio: float = 200.0  # expanded / compressed, checked once a member passes ratio_floor
    ratio_floor: int = 1 * MiB  # small members (mostly-empty logs) compress very well legitimately
    max_members: int = 100_000  # members listed, all archives of the run together
    max_cpu_s: float = 300.0  # CPU seconds spent opening archives, for the whole run


class LimitExceeded(Exception):
    """A member would pass a limit: skip it (and, for run-wide limits, what follows)."""


class ArchiveError(Exception):
    """The archive as a whole cannot be read: the message is the reason shown for it."""


@dataclass
class Budget:
    """What is left for the rest of the run: bytes, members, and CPU time (process time)."""

    limits: ArchiveLimits
    bytes_left: int = -1
    members_left: int = -1
    started: float = field(default_factory=time.process_time)

    def __post_init__(self) -> None:
        if self.bytes_left < 0:
            self.bytes_left = self.limits.max_total
        if self.members_left < 0:
            self.members_left = self.limits.max_members

    def cpu_reason(self) -> str | None:
        """Why nothing more may be extracted when the run's CPU time for archives is used up."""
        if time.process_time() - self.started > self.limits.max_cpu_s:
            return (
                f"archive handling passed the run's CPU limit of {self.limits.max_cpu_s:g} s, not extracted"
            )
        return None

    def check_cpu(self) -> None:
        reason = self.cpu_reason()
        if reason:
            raise LimitExceeded(reason)

    def take_member(self) -> str | None:
        """Count one member; the reason it must be skipped when the run holds too many."""
        if self.members_left <= 0:
            return f"the inputs hold over {self.limits.max_members} archive members, not extracted"
        self.members_left -= 1
        return None


@dataclass
class Member:
    """One archive member: its name, size, and where it was extracted or why it was skipped."""

    name: str
    size: int
    skip_reason: str | None = None
    path: Path | None = None


@dataclass
class Listing:
    """What a reader made of one archive: its members, and a problem that stopped it part way."""

    members: list[Member] = field(default_factory=list)
    problem: str | None = None


# A reader gets the archive path, the run's budget and a function returning a fresh target path.
NewTarget = Callable[[], Path]
Reader = Callable[[Path, Budget, NewTarget], Listing]


class Sink:
    """A new file (never an existing one) that refuses to grow past the limits; removed on failure.

    `packed` is the member's compressed size when the format says it (ratio check), else None.
    """

    def __init__(self, target: Path, budget: Budget, packed: int | None = None) -> None:
        self.target = target
        self.budget = budget
        self.packed = packed
        self.written = 0
        self._file: BinaryIO = target.open("xb")

    def write(self, block: bytes | bytearray | memoryview) -> int:
        limits = self.budget.limits
        size = len(block)
        self.written += size
        if self.written > limits.max_entry:
            raise LimitExceeded(f"expands past the per-member limit of {limits.max_entry} bytes")
        if size > self.budget.bytes_left:
            raise LimitExceeded(f"archives expand past the run's total limit of {limits.max_total} bytes")
        if (
            self.packed is not None
            and self.written > limits.ratio_floor
            and self.written > limits.max_ratio * max(self.packed, 1)
        ):
            raise LimitExceeded(f"compression ratio over {limits.max_ratio:g} (possible zip bomb)")
        self.budget.check_cpu()
        self.budget.bytes_left -= size
        self._file.write(block)
        return size

    def __enter__(self) -> Sink:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._file.close()
        if kind is not None:
            self.target.unlink(missing_ok=True)


def copy_to(src: BinaryIO, sink: Sink) -> None:
    while block := src.read(READ_BLOCK):
        sink.write(block)


def extract_member(member: Member, opener: Callable[[], BinaryIO], budget: Budget, new_target: NewTarget,
                   packed: int | None = None) -> None:  # fmt: skip
    """Stream one member out through a Sink; on a limit or read error, set its skip reason instead."""
    target = new_target()
    try:
        with opener() as src, Sink(target, budget, packed) as sink:
            copy_to(src, sink)
        member.path = target
    except LimitExceeded as exc:
        member.skip_reason = str(exc)
    except (OSError, EOFError, RuntimeError, ValueError, NotImplementedError, zipfile.BadZipFile) as exc:
        member.skip_reason = f"cannot extract: {exc}"


# --- zip ---------------------------------------------------------------------------------------------

ZIP_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA)


def _is_symlink(info: zipfile.ZipInfo) -> bool:
    return info.create_system == 3 and stat.S_ISLNK(info.external_attr >> 16)


def check_member(info: zipfile.ZipInfo, limits: ArchiveLimits) -> str | None:
    """Why the zip member `info` must not be extracted, or None."""
    if _is_symlink(info):
        return "symbolic link in the archive, not followed"
    if info.flag_bits & 0x1:
        return "encrypted archive member, cannot be read"
    if info.file_size > limits.max_entry:
        return f"expands to {info.file_size} bytes, over the per-member limit of {limits.max_entry}"
    if info.compress_type not in ZIP_METHODS:
        return f"unsupported zip compression method {info.compress_type}"
    if info.file_size > limits.ratio_floor and info.file_size > limits.max_ratio * max(info.compress_size, 1):
        return f"compression ratio over {limits.max_ratio:g} (possible zip bomb), not extracted"
    return None


def overlapping_entries(archive: zipfile.ZipFile) -> str | None:
    """Why the archive's entries overlap (members sharing compressed bytes: a zip bomb), or None.

    Each entry needs at least a local header plus its compressed size before the next one starts
    (a lower bound: names and extra fields come on top), and the last one must end before the
    central directory. Linear after one sort.
    """
    infos = sorted(archive.infolist(), key=lambda i: i.header_offset)
    ends = [(i.header_offset, i.header_offset + ZIP_LOCAL_HEADER + i.compress_size, i) for i in infos]
    for (_, end, first), (start, _, second) in zip(ends, ends[1:], strict=False):
        if start < end:
            return (
                f"overlapping zip entries ({first.filename!r} and {second.filename!r} share compressed "
                "bytes: a zip bomb), not extracted"
            )
    if ends and ends[-1][1] > archive.start_dir:
        return "zip entry runs into the central directory (damaged or crafted archive), not extracted"
    return None


def zip_members(archive: zipfile.ZipFile, budget: Budget) -> Iterator[tuple[zipfile.ZipInfo, Member]]:
    """File members in name order (directories left out), each with its skip reason if any."""
    infos = sorted((i for i in archive.infolist() if not i.is_dir()), key=lambda i: i.filename)
    for info in infos:
        reason = budget.take_member() or budget.cpu_reason() or check_member(info, budget.limits)
        yield info, Member(info.filename, info.file_size, reason)


def read_zip(path: Path, budget: Budget, new_target: NewTarget) -> Listing:
    listing = Listing()
    try:
        with zipfile.ZipFile(path) as archive:
            overlap = overlapping_entries(archive)
            if overlap:
                raise ArchiveError(overlap)
            for info, member in zip_members(archive, budget):
                listing.members.append(member)
                if member.skip_reason is None:
                    extract_member(member, lambda info=info: archive.open(info), budget, new_target,
                                   packed=info.compress_size)  # fmt: skip
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError) as exc:
        if not listing.members:
            raise ArchiveError(f"damaged or unreadable zip: {exc}") from None
        listing.problem = f"damaged zip, read part way: {exc}"
    return listing
