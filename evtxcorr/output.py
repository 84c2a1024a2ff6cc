"""Where reports go: -o/--format checked before any work, then every report written all-or-nothing.

plan_outputs() decides the files and refuses, before a single log is parsed, anything that would
fail or do harm later: a suffix that names no report format or disagrees with --format, a target
that is one of the inputs (or inside an input folder), a device, a folder that cannot be written.
write_reports() writes every report to a temporary file beside its target first and renames them
into place only when all are written, so a full disk or a signal leaves the old reports (or none),
never a new HTML beside an old JSON.

Modes: a new report gets the mode any new file gets (0666 less the umask, as `touch` would); an
existing report that is replaced keeps its mode.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from evtxcorr.errors import OutputError
from evtxcorr.signals import deferred

SUFFIXES = {"html": ".html", "md": ".md", "json": ".json"}
SUFFIX_ALIASES = {".htm": "html", ".markdown": "md"}
DEFAULT_FORMATS = ("html", "md", "json")
REPORT_STEM = "evtxcorr-report"
FORMAT_NAMES = {"html": "HTML", "md": "Markdown", "json": "JSON"}


def format_from_suffix(path: Path) -> str | None:
    """'report.htm' -> 'html'; None when the suffix names no format."""
    suffix = path.suffix.lower()
    for fmt, known in SUFFIXES.items():
        if suffix == known:
            return fmt
    return SUFFIX_ALIASES.get(suffix)


def _is_folder_target(output: Path, spelled: str) -> bool:
    """-o names a folder: an existing one, a path written with a trailing slash, or one without a suffix."""
    return output.is_dir() or spelled.endswith(("/", os.sep)) or (not output.suffix and not output.exists())


def _choose(output: Path, spelled: str, formats: Sequence[str]) -> dict[str, Path]:
    if output.exists() and not output.is_dir() and not output.is_file():
        raise OutputError(f"-o {output}: not a regular file or folder; give a report file or a folder")
    if _is_folder_target(output, spelled):
        chosen = list(dict.fromkeys(formats)) or list(DEFAULT_FORMATS)
        return {fmt: output / f"{REPORT_STEM}{SUFFIXES[fmt]}" for fmt in chosen}
    suffix_format = format_from_suffix(output)
    if suffix_format is None:
        known = ", ".join([*SUFFIXES.values(), *SUFFIX_ALIASES])
        what = "is an existing file that is not a report" if output.exists() else "has no report suffix"
        raise OutputError(f"-o {output} {what} ({known}); to write into a folder, end the path with '/'")
    chosen = list(dict.fromkeys(formats)) or [suffix_format]
    if len(chosen) > 1:
        raise OutputError(f"-o {output} is one file; give -o a folder to write {', '.join(chosen)}")
    if chosen[0] != suffix_format:
        raise OutputError(
            f"--format {chosen[0]} does not match -o {output} (a {FORMAT_NAMES[suffix_format]} file name); "
            f"name it {output.with_suffix(SUFFIXES[chosen[0]]).name} or leave --format out"
        )
    return {suffix_format: output}


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or path.is_relative_to(folder)


def _refuse_inputs(targets: Sequence[Path], inputs: Sequence[Path]) -> None:
    """An input, a file inside an input folder, or an input archive must never become a report."""
    for given in inputs:
        given_path = Path(given)
        resolved = given_path.resolve()
        for target in targets:
            where = target.resolve()
            same = _inside(where, resolved) if given_path.is_dir() else where == resolved
            if not same and target.exists() and given_path.exists():
                try:
                    same = target.samefile(given_path)  # a hard link or another spelling of the input
                except OSError:
                    same = False
            if same:
                what = "inside the input folder" if given_path.is_dir() else "an input"
                raise OutputError(
                    f"-o {target} is {what} {given}; write the report outside the inputs "
                    "(it would replace or join the logs it reports on)"
                )


def _nearest_existing(path: Path) -> Path:
    for candidate in [path, *path.parents]:
        if candidate.exists():
            return candidate
    return Path.cwd()


def _check_writable(targets: Sequence[Path]) -> None:
    """The folder each report goes to exists (or can be made) and takes a new file: probed with a
    temporary file, so a read-only file system or missing permission is found now, not after the run."""
    probed: set[Path] = set()
    for target in targets:
        if target.exists() and not target.is_file():
            raise OutputError(f"-o: {target} exists and is not a regular file")
        folder = _nearest_existing(target.parent)
        if not folder.is_dir():
            raise OutputError(f"-o: {folder} is not a folder, cannot write {target} under it")
        if folder in probed:
            continue
        probed.add(folder)
        try:
            with tempfile.TemporaryFile(dir=folder, prefix=".evtxcorr-probe-"):
                pass
        except OSError as exc:
            raise OutputError(f"cannot write reports into {folder}: {exc.strerror or exc}") from None


def plan_outputs(
    output: Path | str | None, formats: Sequence[str], *, inputs: Sequence[Path] = ()
) -> dict[str, Path | None]:
    """Map each format to the file it goes to; None means standard output. Raises OutputError.

    No -o: one format to stdout (Markdown when none is asked for). -o FILE (.html/.htm, .md/.markdown,
    .json): that file, in the format its suffix names (--format, if given, must agree). -o DIR (an
    existing folder, a path ending in '/', or one without a suffix): evtxcorr-report.<ext> for each
    format, all three when none is asked for.
    """
    if output is None:
        chosen = list(dict.fromkeys(formats)) or ["md"]
        if len(chosen) > 1:
            raise OutputError("several --format values need -o DIR to write them to")
        return {chosen[0]: None}
    spelled = os.fspath(output)
    path = Path(spelled)
    plan = _choose(path, spelled, formats)
    targets = list(plan.values())
    _refuse_inputs(targets, inputs)
    _check_writable(targets)
    return dict(plan)


def _new_file_mode() -> int:
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def output_mode(target: Path) -> int:
    """The mode a file written to `target` gets: the replaced file's, else a new file's (0666 less the
    umask, as `touch` would give it)."""
    return (target.stat().st_mode & 0o7777) if target.is_file() else _new_file_mode()


def check_output_file(target: Path, inputs: Sequence[Path]) -> None:
    """-o FILE of a command that writes one file (timeline), checked before any work: not a folder,
    never an input or inside an input folder, in a folder that takes a new file. Raises OutputError."""
    if target.is_dir():
        raise OutputError(f"-o {target} is a folder; give the file to write")
    _refuse_inputs([target], inputs)
    _check_writable([target])


def _stage(target: Path, text: str, mode: int) -> Path:
    """Write `text` to a new temporary file beside `target` (flushed to disk); return its path."""
    while True:
        staged = target.with_name(f".{target.name}.{secrets.token_hex(4)}.part")
        try:
            fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            break
        except FileExistsError:
            continue
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        staged.chmod(mode)
    except BaseException:
        staged.unlink(missing_ok=True)
        raise
    return staged


def write_reports(reports: Mapping[Path, str]) -> None:
    """Write every report, all or nothing: each is staged beside its target, and the renames happen
    only once all are written (a signal waits until they are done). Raises OutputError."""
    staged: list[tuple[Path, Path]] = []
    current: Path | None = None
    try:
        for target, text in reports.items():
            current = target
            target.parent.mkdir(parents=True, exist_ok=True)
            mode = output_mode(target)
            staged.append((_stage(target, text, mode), target))
        with deferred():
            for temporary, target in staged:
                current = target
                temporary.replace(target)
    except OSError as exc:
        raise OutputError(f"cannot write {current}: {exc.strerror or exc}; no report written") from None
    finally:
        for temporary, _ in staged:
            temporary.unlink(missing_ok=True)


def write_atomic(path: Path, text: str) -> None:
    """One report, written via a temporary file and a rename (see write_reports)."""
    write_reports({path: text})
