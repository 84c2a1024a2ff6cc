"""Archives read front to back: tar (plain or gzip/bzip2/xz-compressed), single compressed files
(.gz/.bz2/.xz) and 7z, with the shared limits of archive.py.

Members are streamed out in archive order in one pass, so the work is linear in the archive's size
however many members it holds. tarfile and gzip come from the standard library; 7z from py7zr, the
only module that imports it.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import tarfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from evtxcorr.discover.archive import (
    ArchiveError,
    Budget,
    LimitExceeded,
    Listing,
    Member,
    NewTarget,
    Sink,
    copy_to,
    extract_member,
)

# kind (sniff.py) -> (name in reasons, opener of the decompressed stream, tarfile stream mode)
COMPRESSED: dict[str, tuple[str, Callable[[Path], BinaryIO], str]] = {
    "gzip": ("gzip", lambda p: gzip.open(p, "rb"), "r|gz"),  # type: ignore[dict-item]  # noqa: SIM115
    "bzip2": ("bzip2", lambda p: bz2.open(p, "rb"), "r|bz2"),  # type: ignore[dict-item]  # noqa: SIM115
    "xz": ("xz", lambda p: lzma.open(p, "rb"), "r|xz"),  # type: ignore[dict-item]  # noqa: SIM115
}
TAR_MAGIC_OFFSET = 257
# What a damaged or truncated compressed stream raises.
DAMAGED: tuple[type[BaseException], ...] = (
    OSError,
    EOFError,
    tarfile.TarError,
    lzma.LZMAError,
    ValueError,
    zlib.error,
)


def _tar_skip_reason(member: tarfile.TarInfo) -> str | None:
    if member.issym() or member.islnk():
        return "link in the archive, not followed"
    if not member.isreg():
        return "special file in the archive (device, fifo...), not extracted"
    return None


def _read_tar_stream(stream: BinaryIO | None, path: Path, mode: str, budget: Budget, new_target: NewTarget,
                     packed: int, listing: Listing) -> None:  # fmt: skip
    """Members of a tar read in stream mode (one pass; `packed` bounds the whole archive's ratio)."""
    with tarfile.open(name=None if stream else str(path), fileobj=stream, mode=mode) as archive:
        expanded = 0
        for info in archive:
            if info.isdir():
                continue
            member = Member(info.name, info.size)
            listing.members.append(member)
            member.skip_reason = budget.take_member() or budget.cpu_reason() or _tar_skip_reason(info)
            if member.skip_reason is None and info.size > budget.limits.max_entry:
                member.skip_reason = (
                    f"expands to {info.size} bytes, over the per-member limit of {budget.limits.max_entry}"
                )
            if member.skip_reason is None:
                limits = budget.limits
                expanded += info.size
                if expanded > limits.ratio_floor and expanded > limits.max_ratio * max(packed, 1):
                    member.skip_reason = (
                        f"compression ratio over {limits.max_ratio:g} (possible archive bomb)"
                    )
                    continue
                extract_member(member, lambda info=info: archive.extractfile(info), budget, new_target)  # type: ignore[arg-type,return-value]


def is_tar(head: bytes) -> bool:
    return head[TAR_MAGIC_OFFSET : TAR_MAGIC_OFFSET + 5] == b"ustar"


def read_tar(path: Path, budget: Budget, new_target: NewTarget) -> Listing:
    listing = Listing()
    try:
        _read_tar_stream(None, path, "r|", budget, new_target, path.stat().st_size, listing)
    except DAMAGED as exc:
        if not listing.members:
            raise ArchiveError(f"damaged or unreadable tar archive: {exc}") from None
        listing.problem = f"damaged tar archive, read part way: {exc}"
    return listing


def _gzip_name(path: Path) -> str | None:
    """The original file name stored in a gzip header (FNAME), if any."""
    with path.open("rb") as fh:
        head = fh.read(10)
        if len(head) < 10 or not head[3] & 0x08:
            return None
        if head[3] & 0x04:  # FEXTRA: two-byte length, then that many bytes
            extra = fh.read(2)
            fh.seek(int.from_bytes(extra, "little"), 1)
        raw = fh.read(1024).split(b"\x00", 1)[0]
    name = raw.decode("latin-1").replace("\\", "/").rsplit("/", 1)[-1]
    return name or None


def _inner_name(path: Path, kind: str) -> str:
    if kind == "gzip" and (stored := _gzip_name(path)):
        return stored
    suffixes = {"gzip": (".gz", ".tgz"), "bzip2": (".bz2", ".tbz2"), "xz": (".xz", ".txz")}[kind]
    name = path.name
    for suffix in suffixes:
        if name.lower().endswith(suffix):
            stem = name[: -len(suffix)]
            return f"{stem}.tar" if suffix.startswith(".t") else stem
    return f"{name} (decompressed)"


def read_compressed(kind: str) -> Callable[[Path, Budget, NewTarget], Listing]:
    """Reader for a gzip/bzip2/xz file: a compressed tar is read as a tar, anything else is one member."""
    label, opener, tar_mode = COMPRESSED[kind]

    def read(path: Path, budget: Budget, new_target: NewTarget) -> Listing:
        listing = Listing()
        packed = path.stat().st_size
        try:
            with opener(path) as stream:
                head = stream.read(TAR_MAGIC_OFFSET + 8)
            if is_tar(head):
                with path.open("rb") as raw:
                    _read_tar_stream(raw, path, tar_mode, budget, new_target, packed, listing)
                return listing
            member = Member(_inner_name(path, kind), -1)
            listing.members.append(member)
            member.skip_reason = budget.take_member() or budget.cpu_reason()
            if member.skip_reason is None:
                target = new_target()
                try:
                    with opener(path) as stream, Sink(target, budget, packed) as sink:
                        copy_to(stream, sink)
                    member.path, member.size = target, sink.written
                except LimitExceeded as exc:
                    member.skip_reason = str(exc)
        except DAMAGED as exc:
            if not listing.members:
                raise ArchiveError(f"damaged or truncated {label} file: {exc}") from None
            listing.problem = f"damaged or truncated {label} file, read part way: {exc}"
            for member in listing.members:
                if member.path is None and member.skip_reason is None:
                    member.skip_reason = f"cannot extract: {exc}"
        return listing

    return read


# --- 7z ----------------------------------------------------------------------------------------------


def read_7z(path: Path, budget: Budget, new_target: NewTarget) -> Listing:
    """7z through py7zr: listed, then every wanted member extracted in one pass (solid blocks are
    decompressed once), each into its own Sink."""
    import py7zr
    from py7zr.helpers import get_sanitized_output_path
    from py7zr.io import Py7zIO, WriterFactory

    listing = Listing()
    sinks: dict[str, Sink] = {}  # py7zr's output name -> our file
    keys: dict[str, str] = {}  # member name -> py7zr's output name
    failures: dict[str, str] = {}  # py7zr's output name -> why it was not extracted

    class _Writer(Py7zIO):
        def __init__(self, name: str) -> None:
            self.name = name

        def write(self, s: bytes | bytearray) -> int:
            sink = sinks.get(self.name)
            if sink is None or self.name in failures:
                return len(s)
            try:
                return sink.write(s)
            except LimitExceeded as exc:
                failures[self.name] = str(exc)
                return len(s)

        def read(self, size: int | None = None) -> bytes:
            return b""

        def seek(self, offset: int, whence: int = 0) -> int:
            return 0

        def flush(self) -> None:
            return None

        def size(self) -> int:
            sink = sinks.get(self.name)
            return sink.written if sink else 0

    class _Factory(WriterFactory):
        def create(self, filename: str) -> Py7zIO:
            return _Writer(filename)

    try:
        with path.open("rb") as raw, py7zr.SevenZipFile(raw, mode="r") as archive:
            if archive.needs_password():
                raise ArchiveError("encrypted 7z archive, cannot be read")
            wanted: list[str] = []
            for info in sorted(archive.list(), key=lambda i: i.filename):
                if info.is_directory:
                    continue
                member = Member(info.filename, info.uncompressed or 0)
                listing.members.append(member)
                member.skip_reason = budget.take_member() or budget.cpu_reason()
                if member.skip_reason is None and info.is_symlink:
                    member.skip_reason = "link in the archive, not followed"
                elif member.skip_reason is None and not info.is_file:
                    member.skip_reason = "special file in the archive, not extracted"
                elif member.skip_reason is None and member.size > budget.limits.max_entry:
                    member.skip_reason = f"expands to {member.size} bytes, over the per-member limit of {budget.limits.max_entry}"
                key = _py7zr_key(get_sanitized_output_path, info.filename)
                if member.skip_reason is None and key is None:
                    member.skip_reason = "member name points outside the archive, not extracted"
                elif member.skip_reason is None and key in sinks:
                    member.skip_reason = "a second member with the same name, not extracted"
                if member.skip_reason is None and key is not None:
                    sinks[key] = Sink(new_target(), budget)
                    member.path = sinks[key].target
                    keys[info.filename] = key
                    wanted.append(info.filename)
            if wanted:
                archive.extract(targets=wanted, factory=_Factory())
    except ArchiveError:
        raise
    except py7zr.exceptions.PasswordRequired:  # an encrypted header: nothing can even be listed
        raise ArchiveError("encrypted 7z archive, cannot be read") from None
    except (py7zr.exceptions.ArchiveError, lzma.LZMAError, OSError,
            EOFError, ValueError, KeyError) as exc:  # fmt: skip
        if not listing.members:
            raise ArchiveError(f"damaged or unsupported 7z archive: {exc}") from None
        listing.problem = f"damaged or unsupported 7z archive, read part way: {exc}"
        for key in sinks:
            failures.setdefault(key, f"cannot extract: {exc}")
    finally:
        for key, sink in sinks.items():
            sink.__exit__(LimitExceeded if key in failures else None, None, None)
    for member in listing.members:
        key = keys.get(member.name, "")
        if key in failures and member.path is not None:
            member.path, member.skip_reason = None, failures[key]
    return listing


def _py7zr_key(sanitize: Callable[[str, None], Path], name: str) -> str | None:
    """The name py7zr hands its writer factory for member `name`; None when it refuses the name."""
    try:
        return sanitize(name, None).as_posix()
    except Exception:  # noqa: BLE001 - py7zr raises Bad7zFile or ValueError for unsafe names
        return None
