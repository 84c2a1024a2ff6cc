"""What the cases of a batch are, what each is called, and a fingerprint of each one's inputs.

Each immediate child of a folder argument (a folder or an archive) is one case; the loose files at the
top of a folder argument form one case named after that folder; an archive argument is one case, and
loose file arguments are grouped by the folder they are in. An archive is recognised by content, as
discover does: zip, 7z, CAB, tar (plain or compressed) and RAR (which fails, unsupported, as its own
case); a single compressed file that is no tar (System.evtx.gz) is a loose log, not a bundle. A case's name is also its output folder,
so names are unique within a batch (compared case-insensitively, as Windows and macOS file systems
compare them) and never one of the batch's own file names.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from evtxcorr.discover.sniff import sniff
from evtxcorr.discover.streams import COMPRESSED, DAMAGED, TAR_MAGIC_OFFSET, is_tar
from evtxcorr.errors import InputError

# sniff.py kinds that are a bundle of files; gzip, bzip2 and xz are one when they hold a tar.
BUNDLE_KINDS = ("zip", "7z", "cab", "tar", "rar")
# Removed from an archive's file name to name its case (longest first, compared case-insensitively).
ARCHIVE_SUFFIXES = (".tar.gz", ".tar.bz2", ".tar.xz", ".tgz", ".tbz2", ".tbz", ".txz", ".tar", ".zip",
                    ".7z", ".cab", ".rar", ".gz", ".bz2", ".xz")  # fmt: skip
# Files the batch writes at the top of OUTDIR: no case may be called like one of them.
RESERVED_NAMES = ("summary.json", "summary.csv", "summary.html", ".evtxcorr-batch.lock")


@dataclass(frozen=True)
class Case:
    """One case: its unique name (its folder under OUTDIR), what it is, and what analyze reads."""

    name: str
    source: Path  # the child folder or archive, or the folder whose loose files the case holds
    paths: tuple[Path, ...]  # absolute paths given to analyze
    archive: Path | None = None  # for an archive case: the archive (unreadable -> the case failed)
    skip_reason: str | None = None  # set when the child cannot be a case at all (not a file or folder)


@dataclass(frozen=True)
class _Candidate:
    preferred: str
    fallback: str | None  # the next name to try when `preferred` is taken
    source: Path
    paths: tuple[Path, ...]
    archive: Path | None = None
    skip_reason: str | None = None


def plan_cases(paths: Sequence[Path], *, exclude: Iterable[Path] = ()) -> list[Case]:
    """The cases under `paths`, in argument order (children sorted by name).

    `exclude` (the output and work folders) are left out when they are children of a folder
    argument; one lying deeper inside a case is an error, since the case would read our own output.
    Raises InputError for a path that does not exist.
    """
    excluded = {Path(p).resolve() for p in exclude}
    candidates: list[_Candidate] = []
    loose_arguments: dict[Path, list[Path]] = {}
    seen: set[Path] = set()
    for given in map(Path, paths):
        if not given.exists():
            raise InputError(f"no such file or folder: {given}")
        path = given.resolve()
        if path in seen:  # given twice (or through a link): one case, not two
            continue
        seen.add(path)
        if path.is_dir():
            candidates += _folder_cases(path, excluded)
        elif _is_archive(path):
            candidates.append(_archive_case(path))
        else:
            loose_arguments.setdefault(path.parent, []).append(path)
    for folder, files in loose_arguments.items():
        candidates.append(_Candidate(_folder_name(folder), None, folder, tuple(sorted(set(files)))))
    _check_inside(candidates, excluded)
    return _name(candidates)


def _folder_cases(folder: Path, excluded: set[Path]) -> list[_Candidate]:
    found: list[_Candidate] = []
    loose: list[Path] = []
    for child in sorted(folder.iterdir(), key=lambda p: p.name):
        if child.resolve() in excluded:
            continue
        if child.is_dir():
            found.append(_Candidate(child.name, None, child, (child,)))
        elif not child.is_file():
            reason = "neither a folder nor a regular file (a broken link, a pipe, a device...)"
            found.append(_Candidate(child.name, None, child, (), skip_reason=reason))
        elif _is_archive(child):
            found.append(_archive_case(child))
        else:
            loose.append(child)
    if loose:
        found.append(_Candidate(_folder_name(folder), None, folder, tuple(loose)))
    return found


def _archive_case(path: Path) -> _Candidate:
    name = path.name
    suffix = next((s for s in ARCHIVE_SUFFIXES if name.lower().endswith(s) and len(name) > len(s)), "")
    return _Candidate(name[: len(name) - len(suffix)], name, path, (path,), archive=path)


def _is_archive(path: Path) -> bool:
    """A bundle archive by content (as discover decides), whatever its name."""
    try:
        kind = sniff(path)
    except OSError:
        return False  # unreadable: analyze accounts for it with the reason
    if kind in COMPRESSED:
        return _holds_tar(path, kind)
    return kind in BUNDLE_KINDS


def _holds_tar(path: Path, kind: str) -> bool:
    """Does a gzip/bzip2/xz file hold a tar (a bundle)? A damaged one counts as a bundle, so that it
    fails as a case of its own, saying why, rather than beside unrelated loose logs."""
    opener = COMPRESSED[kind][1]
    with suppress(*DAMAGED), opener(path) as stream:
        return is_tar(stream.read(TAR_MAGIC_OFFSET + 8))
    return True


def _folder_name(folder: Path) -> str:
    return folder.name or "inputs"


def _check_inside(candidates: list[_Candidate], excluded: set[Path]) -> None:
    for candidate in candidates:
        for path in candidate.paths:
            for inner in excluded:
                if path.is_dir() and inner != path and inner.is_relative_to(path):
                    raise InputError(
                        f"{inner} is inside the input {path}; the batch would read its own files. "
                        "Choose an output (and work) folder outside the case folders."
                    )


def _name(candidates: list[_Candidate]) -> list[Case]:
    """Unique names: the preferred one, else the fallback (an archive's full file name), else '~2'..."""
    taken = {name.casefold() for name in RESERVED_NAMES}
    cases = []
    for candidate in candidates:
        options = [candidate.preferred, candidate.fallback]
        name = next((n for n in options if n and n.casefold() not in taken), None)
        number = 2
        while name is None:
            trial = f"{candidate.preferred}~{number}"
            name = trial if trial.casefold() not in taken else None
            number += 1
        taken.add(name.casefold())
        cases.append(Case(name, candidate.source, candidate.paths, candidate.archive, candidate.skip_reason))
    return cases


def fingerprint(paths: Sequence[Path]) -> dict[str, object]:
    """What a rerun compares: the paths and every file's path under them, size and modification time."""
    digest = hashlib.sha256()
    files = size = 0
    for path in paths:
        digest.update(f"{path}\0".encode("utf-8", "surrogateescape"))
        for name, stat in _walk(path):
            files += 1
            size += stat[0]
            digest.update(f"{name}\0{stat[0]}\0{stat[1]}\n".encode("utf-8", "surrogateescape"))
    return {"files": files, "bytes": size, "sha256": digest.hexdigest()}


def _walk(path: Path) -> list[tuple[str, tuple[int, int]]]:
    """(relative name, (size, mtime_ns)) of every file under `path` ((-1, -1) when it cannot be read)."""
    if not path.is_dir():
        return [(".", _stat(path))]
    found = []
    for dirpath, _dirs, filenames in os.walk(path):
        for filename in filenames:
            full = Path(dirpath) / filename
            found.append((full.relative_to(path).as_posix(), _stat(full)))
    return sorted(found)


def _stat(path: Path) -> tuple[int, int]:
    try:
        stat = path.stat()
    except OSError:
        return (-1, -1)
    return (stat.st_size, stat.st_mtime_ns)
