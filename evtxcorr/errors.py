"""The exception tree. The library raises these; only cli.py turns them into one-line messages."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Location:
    """Where a problem is: a file, and the line and column in it when known (1-based)."""

    path: str
    line: int | None = None
    col: int | None = None

    def __str__(self) -> str:
        parts = [self.path]
        if self.line is not None:
            parts.append(str(self.line))
            if self.col is not None:
                parts.append(str(self.col))
        return ":".join(parts)


class EvtxcorrError(Exception):
    """Base of every error evtxcorr raises on purpose."""

    def __init__(self, message: str, location: Location | None = None) -> None:
        self.message = message
        self.location = location
        super().__init__(f"{location}: {message}" if location else message)


class InputError(EvtxcorrError):
    """An input cannot be used at all (missing path, nothing readable in it)."""


class RuleError(EvtxcorrError):
    """A rule file is malformed; carries the file, line and column."""


class ParseError(EvtxcorrError):
    """A chunk or record could not be parsed by a backend (caught and counted, never escapes parse/)."""


class OutputError(EvtxcorrError):
    """A report cannot go where -o says (bad suffix, an input, unwritable, disk full...)."""
