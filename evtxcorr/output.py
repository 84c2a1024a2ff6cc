"""Where reports go: choosing file names from -o/--format, and writing them atomically."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from evtxcorr.errors import InputError

SUFFIXES = {"html": ".html", "md": ".md", "json": ".json"}
DEFAULT_FORMATS = ("html", "md", "json")
REPORT_STEM = "evtxcorr-report"


def format_from_suffix(path: Path) -> str | None:
    """'report.htm' -> 'html'; None when the suffix names no format."""
    suffix = path.suffix.lower()
    aliases = {".htm": "html", ".markdown": "md"}
    for fmt, known in SUFFIXES.items():
        if suffix == known:
            return fmt
    return aliases.get(suffix)


def plan_outputs(output: Path | None, formats: Sequence[str]) -> dict[str, Path | None]:
    """Map each format to the file it goes to; None means standard output.

    No -o: one format to stdout (Markdown when none is asked for). -o FILE with a known suffix: that
    file (its suffix picks the format when --format is not given). -o DIR (existing, or no suffix):
    evtxcorr-report.<ext> for each format (all three when none is asked for).
    """
    if output is None:
        chosen = list(formats) or ["md"]
        if len(chosen) > 1:
            raise InputError("several --format values need -o DIR to write them to")
        return {chosen[0]: None}
    suffix_format = format_from_suffix(output)
    if suffix_format and not output.is_dir():
        chosen = list(formats) or [suffix_format]
        if len(chosen) > 1:
            raise InputError(f"{output} is one file; give -o a folder to write {', '.join(chosen)}")
        return {chosen[0]: output}
    chosen = list(formats) or list(DEFAULT_FORMATS)
    return {fmt: output / f"{REPORT_STEM}{SUFFIXES[fmt]}" for fmt in chosen}


def write_atomic(path: Path, text: str) -> None:
    """Write via a temporary file in the same folder and rename, so an interrupted run leaves no
    half-written report that looks complete."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
        Path(tmp_name).replace(path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
