"""Stage 1: paths given on the command line -> sources to parse (.evtx and event-log exports), every
file ledgered.

Files are recognised by content (sniff.py), not by name. Folders are walked recursively; archives
(zip, tar, .gz/.bz2/.xz, 7z, CAB; nested too) are extracted safely into `work_dir` within one budget
per run (archive.py, streams.py, cab.py); names are matched against known collection layouts for
host/channel hints (layouts.py). Order is deterministic (sorted paths).
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from evtxcorr.discover.archive import ArchiveError, ArchiveLimits, Budget, Listing, Reader, read_zip
from evtxcorr.discover.cab import read_cab
from evtxcorr.discover.layouts import evtx_sibling, folder_index, hints
from evtxcorr.discover.sniff import EXPORT_KINDS, sniff
from evtxcorr.discover.streams import read_7z, read_compressed, read_tar
from evtxcorr.errors import InputError
from evtxcorr.ledger import InputEntry, Ledger
from evtxcorr.model import Source

__all__ = ["ArchiveLimits", "discover", "entry_for"]

DEFAULT_LIMITS = ArchiveLimits()
SKIP_REASONS = {
    "empty": "empty file",
    "xml-other": "XML, but not an event log export (no <Events> or <Event> root)",
    "unknown": "not an EVTX file (unrecognised content)",
    "rar": "RAR archive, not supported: extract it and give the folder",
}
# Archive kind (sniff.py) -> reader (archive.py, streams.py, cab.py): members listed and extracted.
READERS: dict[str, Reader] = {
    "zip": read_zip,
    "tar": read_tar,
    "gzip": read_compressed("gzip"),
    "bzip2": read_compressed("bzip2"),
    "xz": read_compressed("xz"),
    "7z": read_7z,
    "cab": read_cab,
}
ARCHIVE_NAMES = {"zip": "zip", "tar": "tar", "gzip": "gzip", "bzip2": "bzip2", "xz": "xz", "7z": "7z",
                 "cab": "CAB"}  # fmt: skip


@dataclass
class _Walk:
    """State of one discover() call."""

    ledger: Ledger
    extract_dir: Path
    max_depth: int
    budget: Budget
    sources: list[Source] = field(default_factory=list)
    seen: set[Path] = field(default_factory=set)
    extracted: int = 0  # members extracted so far (names the next one)

    def new_target(self) -> Path:
        """A fresh file name for the next extracted member: one counter per run, so members of
        different archives never share a name."""
        self.extracted += 1
        return self.extract_dir / f"member-{self.extracted:06d}.bin"


def entry_for(ledger: Ledger, source: Source) -> InputEntry:
    """The ledger entry discover() made for `source` (a new one for a Source made elsewhere)."""
    if 0 <= source.entry_id < len(ledger.entries):
        return ledger.get(source.entry_id)
    return ledger.add(source.display, format=source.kind, size=source.size())


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _text_reason(base_name: str, folder: dict[str, str]) -> str:
    beside = evtx_sibling(base_name, folder)
    if beside:
        return f"text export of {beside}; the .evtx beside it is analysed"
    return ".csv/.txt export copy, not analysed in this version"


def _add_file(walk: _Walk, path: Path, display: str, folder: dict[str, str], depth: int) -> None:
    """Ledger one file and, if it is EVTX or an event-log export, make it a source; archives are
    opened recursively."""
    base = display.replace("\\", "/").rsplit("/", 1)[-1].rsplit("!", 1)[-1]
    try:
        kind = sniff(path)
    except OSError as exc:
        walk.ledger.add(display, status="skipped", reason=f"unreadable: {exc.strerror or exc}")
        return
    size = _size(path)
    if kind == "evtx" or kind in EXPORT_KINDS:  # an export beside its .evtx too: table drops twins
        hint = hints(base)
        entry = walk.ledger.add(display, format=kind, size=size)
        walk.sources.append(
            Source(path, entry.path, kind, host_hint=hint.host, channel_hint=hint.channel, entry_id=entry.id)
        )
    elif kind in READERS:
        _add_archive(walk, kind, path, display, size, depth)
    elif kind in ("text", "empty") and hints(base).ext in ("csv", "txt"):
        reason = _text_reason(base, folder)
        walk.ledger.add(display, format=hints(base).ext, size=size, status="skipped", reason=reason)
    elif kind == "text":
        walk.ledger.add(display, format="text", size=size, status="skipped", reason="text file, not EVTX")
    else:
        walk.ledger.add(display, format={"xml-other": "xml", "rar": "rar"}.get(kind, "unknown"), size=size,
                        status="skipped", reason=SKIP_REASONS[kind])  # fmt: skip


def _add_archive(walk: _Walk, kind: str, path: Path, display: str, size: int, depth: int) -> None:
    """Ledger an archive, extract its members (bounded by the run's budget), then add each one."""
    entry = walk.ledger.add(display, format=kind, size=size)
    label = ARCHIVE_NAMES[kind]
    if depth >= walk.max_depth:
        entry.skip(f"{label} archive nested deeper than {walk.max_depth} levels, not opened")
        return
    try:
        listing: Listing = READERS[kind](path, walk.budget, walk.new_target)
    except ArchiveError as exc:
        entry.skip(str(exc))
        return
    except OSError as exc:
        entry.skip(f"unreadable {label} archive: {exc.strerror or exc}")
        return
    entry.reason = f"{label} archive: {len(listing.members)} member(s)"
    if listing.problem:
        entry.degrade(listing.problem)
        entry.reason = f"{listing.problem} ({len(listing.members)} member(s) listed)"
    folder = folder_index(m.name.replace("\\", "/").rsplit("/", 1)[-1] for m in listing.members)
    for member in sorted(listing.members, key=lambda m: m.name):
        shown = f"{display}!{member.name}"
        name = member.name.replace("\\", "/")
        if ".." in name.split("/") or name.startswith("/") or name[1:3] == ":/":
            walk.ledger.warn(
                f"{shown}: member name points outside the archive; extracted under a generated name"
            )
        if member.path is None:
            reason = member.skip_reason or "not extracted"
            walk.ledger.add(shown, size=max(member.size, 0), status="skipped", reason=reason)
        else:
            _add_file(walk, member.path, shown, folder, depth + 1)


def _walk_folder(walk: _Walk, folder: Path, display_root: str) -> None:
    found: list[tuple[str, Path, dict[str, str]]] = []
    for dirpath, _dirs, filenames in os.walk(folder):  # does not follow directory links (no loops)
        siblings = folder_index(filenames)
        for name in filenames:
            path = Path(dirpath) / name
            found.append((path.relative_to(folder).as_posix(), path, siblings))
    for rel, path, siblings in sorted(found, key=lambda item: item[0]):
        _add_top(walk, path, f"{display_root.rstrip('/')}/{rel}", siblings)


def _special(path: Path) -> bool:
    """A pipe, socket or device: opening one can block for ever (a FIFO waits for a writer)."""
    try:
        return not stat.S_ISREG(path.stat().st_mode)
    except OSError:
        return False  # a broken link or no permission: sniff() says why


def _add_top(walk: _Walk, path: Path, display: str, siblings: dict[str, str]) -> None:
    resolved = path.resolve()
    if resolved in walk.seen:
        walk.ledger.warn(f"{display}: given more than once, read once")
        return
    walk.seen.add(resolved)
    if _special(path):
        walk.ledger.add(
            display, status="skipped", reason="not a regular file (a pipe, socket or device), not read"
        )
        return
    _add_file(walk, path, display, siblings, 0)


def discover(
    paths: Sequence[Path],
    ledger: Ledger,
    *,
    work_dir: Path,
    max_depth: int = 4,
    limits: ArchiveLimits = DEFAULT_LIMITS,
) -> list[Source]:
    """EVTX sources found in `paths` (files, folders, zips, in any mix), in a deterministic order.

    Every file met gets a ledger entry, skipped ones with a reason. Archive members are extracted
    under `work_dir`, within `limits` for the whole run. Raises InputError only for a path that does
    not exist.
    """
    missing = [p for p in paths if not Path(p).exists()]
    if missing:
        raise InputError(f"no such file or folder: {missing[0]}")
    work_dir.mkdir(parents=True, exist_ok=True)
    extract_dir = Path(tempfile.mkdtemp(prefix="extract-", dir=work_dir)).resolve()
    walk = _Walk(ledger, extract_dir, max_depth, Budget(limits))
    for given in sorted((Path(p) for p in paths), key=lambda p: str(p)):
        if given.is_dir():
            _walk_folder(walk, given, str(given))
        else:
            siblings = folder_index(c.name for c in given.parent.iterdir()) if given.parent.is_dir() else {}
            _add_top(walk, given, str(given), siblings)
    if not walk.sources:
        ledger.warn("no EVTX file found in the inputs")
    return walk.sources
