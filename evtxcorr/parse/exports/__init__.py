"""Readers of event-log exports (XML, CSV, JSON), by Source kind. Each yields model.RECORD_FIELDS
dicts plus the model.EXPORT_FIELDS it knows, with `chunk` = the record's index in the file and
`offset` = the line it starts on, and accounts for every record on the file's ledger entry.

READERS[kind](source, entry, source_tz=ZONE) -> iterator of records
NEEDS_ZONE[kind](source) -> True when the file's times are local times with no zone (--source-tz)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from evtxcorr.ledger import InputEntry
from evtxcorr.model import Source
from evtxcorr.parse.exports import eventcsv, eventjson, eventxml
from evtxcorr.parse.exports.common import zone_error

__all__ = ["NEEDS_ZONE", "READERS", "zone_error"]

Reader = Callable[..., Iterator[dict]]

READERS: dict[str, Reader] = {"xml": eventxml.read, "csv": eventcsv.read, "json": eventjson.read}
NEEDS_ZONE: dict[str, Callable[[Source], bool]] = {
    "xml": eventxml.needs_zone,
    "csv": eventcsv.needs_zone,
    "json": eventjson.needs_zone,
}


def read_export(source: Source, entry: InputEntry, *, source_tz: str | None = None) -> Iterator[dict]:
    """Records of one export source (its kind picks the reader)."""
    return READERS[source.kind](source, entry, source_tz=source_tz)
