"""Event XML exports -> records: Event Viewer's "Save as XML" (an `<Events>` root) and the stream of
`<Event>` elements with no root that `wevtutil qe LOG /f:xml` prints.

Read streaming with lxml's pull parser, each `<Event>` cleared once read, so a 1 GB export takes
memory for one event at a time; entities are never resolved, no DTD is loaded, nothing is fetched,
and a DOCTYPE refuses the file. Each `<Event>` goes through normalise.element_to_record, the function
the .evtx readers use, so payload positions (param1..N) come out the same. `<RenderingInfo>`, when
present, gives Windows' own message, level and task text (Microsoft's RenderingInfoType schema:
Message, Level, Opcode, Task, Channel, Provider, Keywords; attribute Culture).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from lxml import etree

from evtxcorr.ledger import InputEntry
from evtxcorr.model import Source
from evtxcorr.parse.exports.common import Failures, head_text, open_text, read_file, skeleton
from evtxcorr.parse.normalise import RecordFormatError, element_to_record, local

PARSER = "xml-export"
READ_SIZE = 1 << 20
_DECLARATION = re.compile(r"^\s*<\?xml[^>]*\?>")
_ROOTED = re.compile(r"^\s*(?:<!--.*?-->\s*)*<Events[\s>/]", re.DOTALL)
_DOCTYPE = re.compile(r"<!DOCTYPE", re.IGNORECASE)


def needs_zone(source: Source) -> bool:
    """Event XML times are UTC (SystemTime ends in 'Z'): never."""
    return False


def _parser() -> etree.XMLPullParser:
    """Only <Event> ends reach Python (any namespace): the rest is parsed in C."""
    return etree.XMLPullParser(
        events=("end",),
        tag=("{*}Event", "Event"),
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
    )


def _rendering(event: etree._Element) -> dict[str, str]:
    """Windows' rendered texts from <RenderingInfo>, when the export has them."""
    info = next((child for child in event if local(child.tag) == "RenderingInfo"), None)
    if info is None:
        return {}
    texts = {local(child.tag): "".join(child.itertext()) for child in info}
    return {
        "rendered_message": texts.get("Message", "").strip(),
        "rendered_level": texts.get("Level", "").strip(),
        "rendered_task": texts.get("Task", "").strip(),
        "rendered_culture": info.get("Culture", ""),
    }


def _record(event: etree._Element, entry: InputEntry, index: int) -> dict[str, object]:
    record = skeleton(entry, PARSER)
    record.update(element_to_record(event))
    record.update(_rendering(event))
    record["chunk"] = index
    record["offset"] = event.sourceline or 0
    return record


def _chunks(source: Source, entry: InputEntry) -> Iterator[bytes]:
    """The file as UTF-8 bytes, its XML declaration dropped (the text is re-encoded) and, for a
    wevtutil stream, wrapped in an <Events> root. Line numbers are kept."""
    with open_text(source.path, entry) as text:
        first = text.read(READ_SIZE).lstrip("\ufeff")
        first = _DECLARATION.sub(lambda m: "\n" * m.group(0).count("\n"), first, count=1)
        rooted = bool(_ROOTED.match(first))
        yield (first if rooted else "<Events>" + first).encode("utf-8")
        while block := text.read(READ_SIZE):
            yield block.encode("utf-8")
        if not rooted:
            yield b"</Events>"


def _events(source: Source, entry: InputEntry, failures: Failures) -> Iterator[dict]:
    parser = _parser()
    index = 0
    try:
        for chunk in _chunks(source, entry):
            parser.feed(chunk)
            for _, element in parser.read_events():
                root = element.getparent()
                if root is None or root.getparent() is not None:
                    continue  # the root itself, or an element named Event inside an event
                try:
                    yield _record(element, entry, index)
                except (RecordFormatError, ValueError) as exc:
                    failures.add(f"event {index} (line {element.sourceline})", str(exc))
                index += 1
                element.clear()
                while root[0] is not element:  # drop what is read: memory stays one event
                    del root[0]
        parser.close()
    except etree.XMLSyntaxError as exc:
        what = "the file ends inside an event (truncated?)" if "end" in str(exc).lower() else str(exc)
        entry.degrade(f"XML not well-formed after {index} event(s): {what}; the rest is not read")


def read(source: Source, entry: InputEntry, *, source_tz: str | None = None) -> Iterator[dict]:
    """Records of one event XML export, in file order (`chunk` = event index, `offset` = its line)."""
    if _DOCTYPE.search(head_text(source.path)):
        entry.format = "xml"
        entry.skip("XML with a DOCTYPE: not an event export (entities are never expanded)")
        return iter(())
    return read_file(
        "xml", lambda src, e, _local, failures: _events(src, e, failures), source, entry, source_tz
    )
