"""Stage 1: paths given on the command line -> sources to parse (.evtx and event-log exports), every
file ledgered.

Files are recognised by content (sniff.py), not by name. Folders are walked recursively, zips
(nested too) are extracted safely into `work_dir` (archive.py), names are matched against known
collection layouts for host/channel hints (layouts.py). Order is deterministic (sorted paths).
"""

from __future__ import annotations

import os
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from evtxcorr.discover.archive import ArchiveLimits, Budget, LimitExceeded, Member, extract, members
from evtxcorr.discover.layouts import evtx_sibling, hints
from evtxcorr.discover.sniff import EXPORT_KINDS, sniff
from evtxcorr.errors import InputError
from evtxcorr.ledger import InputEntry, Ledger
from evtxcorr.model import Source

__all__ = ["ArchiveLimits", "discover", "entry_for"]

DEFAULT_LIMITS = ArchiveLimits()
SKIP_REASONS = {
    "empty": "empty file",
    "xml-other": "XML, but not an event log export (no <Events> or <Event> root)",
    "unknown": "not an EVTX file (unrecognised content)",
}


@dataclass
class _Walk:
    """State of one discover() call."""

    ledger: Ledger
    extract_dir: Path
    max_depth: int
    limits: ArchiveLimits
    sources: list[Source] = field(default_factory=list)
    seen: set[Path] = field(default_factory=set)
    extracted: int = 0  # members extracted so far (names the next one)


def entry_for(ledger: Ledger, source: Source) -> InputEntry:
    """The ledger entry discover() made for `source` (a new one for a Source made elsewhere)."""
    if 0 <= source.entry_id < len(ledger.entries):
        return ledger.get(source.entry_id)
    return ledger.add(source.display, format=source.kind, size=_size(source.path))


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _text_reason(base_name: str, siblings: set[str]) -> str:
    beside = evtx_sibling(base_name, siblings)
    if beside:
        return f"text export of {beside}; the .evtx beside it is analysed"
    return ".csv/.txt export copy, not analysed in this version"


def _add_file(
    walk: _Walk, path: Path, display: str, siblings: set[str], depth: int, budget: Budget | None
) -> None:
    """Ledger one file and, if it is EVTX or an event-log export, make it a source; zips are opened
    recursively."""
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
    elif kind == "zip":
        _add_zip(walk, path, display, size, depth, budget)
    elif kind in ("text", "empty") and hints(base).ext in ("csv", "txt"):
        reason = _text_reason(base, siblings)
        walk.ledger.add(display, format=hints(base).ext, size=size, status="skipped", reason=reason)
    elif kind == "text":
        walk.ledger.add(display, format="text", size=size, status="skipped", reason="text file, not EVTX")
    else:
        walk.ledger.add(display, format="xml" if kind == "xml-other" else "unknown", size=size,
                        status="skipped", reason=SKIP_REASONS[kind])  # fmt: skip


def _add_zip(walk: _Walk, path: Path, display: str, size: int, depth: int, budget: Budget | None) -> None:
    entry = walk.ledger.add(display, format="zip", size=size)
    if depth >= walk.max_depth:
        entry.skip(f"archive nested deeper than {walk.max_depth} levels, not opened")
        return
    budget = budget or Budget(remaining=walk.limits.max_total)
    try:
        with zipfile.ZipFile(path) as archive:
            listed = list(members(archive, walk.limits))
            names = {m.name.rsplit("/", 1)[-1] for m in listed}
            entry.reason = f"archive: {len(listed)} member(s)"
            for member in listed:
                _add_member(walk, archive, member, display, names, depth, budget)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError) as exc:
        entry.skip(f"damaged or unreadable zip: {exc}")


def _add_member(
    walk: _Walk,
    archive: zipfile.ZipFile,
    member: Member,
    parent: str,
    names: set[str],
    depth: int,
    budget: Budget,
) -> None:
    display = f"{parent}!{member.name}"
    if ".." in member.name.replace("\\", "/").split("/") or member.name.startswith(("/", "\\")):
        walk.ledger.warn(
            f"{display}: member name points outside the archive; extracted under a generated name"
        )
    if member.skip_reason:
        walk.ledger.add(display, size=member.info.file_size, status="skipped", reason=member.skip_reason)
        return
    try:
        walk.extracted += 1  # one counter per run: members of different archives never share a name
        target = walk.extract_dir / f"member-{walk.extracted:06d}.bin"
        extracted = extract(archive, member.info, target, walk.limits, budget)
    except LimitExceeded as exc:
        walk.ledger.add(display, size=member.info.file_size, status="skipped", reason=str(exc))
        return
    except (zipfile.BadZipFile, OSError, EOFError, RuntimeError, NotImplementedError) as exc:
        walk.ledger.add(
            display, size=member.info.file_size, status="skipped", reason=f"cannot extract: {exc}"
        )
        return
    _add_file(walk, extracted, display, names, depth + 1, budget)


def _walk_folder(walk: _Walk, folder: Path, display_root: str) -> None:
    found: list[tuple[str, Path, set[str]]] = []
    for dirpath, _dirs, filenames in os.walk(folder):  # does not follow directory links (no loops)
        siblings = set(filenames)
        for name in filenames:
            path = Path(dirpath) / name
            found.append((path.relative_to(folder).as_posix(), path, siblings))
    for rel, path, siblings in sorted(found, key=lambda item: item[0]):
        _add_top(walk, path, f"{display_root.rstrip('/')}/{rel}", siblings)


def _add_top(walk: _Walk, path: Path, display: str, siblings: set[str]) -> None:
    resolved = path.resolve()
    if resolved in walk.seen:
        walk.ledger.warn(f"{display}: given more than once, read once")
        return
    walk.seen.add(resolved)
    _add_file(walk, path, display, siblings, 0, None)


def discover(
    paths: Sequence[Path],
    ledger: Ledger,
    *,
    work_dir: Path,
    max_depth: int = 4,
    limits: ArchiveLimits = DEFAULT_LIMITS,
) -> list[Source]:
    """EVTX sources found in `paths` (files, folders, zips, in any mix), in a deterministic order.

    Every file met gets a ledger entry, skipped ones with a reason. Zip members are extracted under
    `work_dir`. Raises InputError only for a path that does not exist.
    """
    missing = [p for p in paths if not Path(p).exists()]
    if missing:
        raise InputError(f"no such file or folder: {missing[0]}")
    work_dir.mkdir(parents=True, exist_ok=True)
    walk = _Walk(ledger, Path(tempfile.mkdtemp(prefix="extract-", dir=work_dir)).resolve(), max_depth, limits)
    for given in sorted((Path(p) for p in paths), key=lambda p: str(p)):
        if given.is_dir():
            _walk_folder(walk, given, str(given))
        else:
            siblings = {child.name for child in given.parent.iterdir()} if given.parent.is_dir() else set()
            _add_top(walk, given, str(given), siblings)
    if not walk.sources:
        ledger.warn("no EVTX file found in the inputs")
    return walk.sources
