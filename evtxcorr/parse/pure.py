"""python-evtx backend: the only module that imports `Evtx`.

python-evtx parses the BinXML (templates, substitutions); this module does the rendering itself,
straight into an lxml tree, with every value formatted as the Rust parser prints it, so that
normalise.element_to_record gives the same dict for both backends. That sidesteps python-evtx's
rendering quirks (evtx-format.md): classic string arrays expand to one <Data> per string, Binary is
hex, FILETIMEs come from the integer (no float), NULL optional substitutions are omitted, attribute
values cannot inject markup. Records are read at the offsets chunks.walk_records found, so a
damaged record costs only itself, even mid-chunk.

Work is bounded: the string and template chains python-evtx follows stop at a repeated offset (a chain
pointing back into itself looped forever), a record renders at most MAX_RENDERED_NODES nodes, and a
chunk gets CHUNK_CPU_SECONDS of this thread's CPU time; what is past a bound is failed, not waited for.
"""

from __future__ import annotations

import struct
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

from Evtx.Evtx import ChunkHeader, Record
from Evtx.Nodes import (
    AttributeNode,
    BXmlTypeNode,
    CDataSectionNode,
    CharacterReferenceNode,
    ConditionalSubstitutionNode,
    EntityReferenceNode,
    NormalSubstitutionNode,
    OpenStartElementNode,
    ValueNode,
    WstringTypeNode,
)
from lxml import etree

from evtxcorr.parse.chunks import CHUNK_SIZE, BoundExceeded, RecordSlot
from evtxcorr.parse.normalise import (
    element_to_record,
    filetime_to_datetime,
    format_time,
    local,
    xml_safe,
)
from evtxcorr.parse.prescan import (
    MAX_EXPANSION,
    STRING_BUCKETS,
    STRING_TABLE,
    TEMPLATE_BUCKETS,
    TEMPLATE_TABLE,
)

NAME = "python-evtx"
MAX_RENDERED_NODES = MAX_EXPANSION  # per record (nested BinXML values referenced many times multiply)
CHUNK_CPU_SECONDS = 10.0  # per chunk (this thread's CPU time): records after it are given up, not read
_ENTITIES = {"amp": "&", "lt": "<", "gt": ">", "quot": '"', "apos": "'"}


def _raw(node: object) -> bytes:
    """The value bytes of a variant node."""
    buf = node._buf  # type: ignore[attr-defined]
    off = node.offset()  # type: ignore[attr-defined]
    return bytes(buf[off : off + node.length()])  # type: ignore[attr-defined]


def _systemtime(raw: bytes) -> str:
    year, month, _dow, day, hour, minute, second, milli = struct.unpack("<8H", raw[:16])
    moment = datetime(year, month, day, hour, minute, second, milli * 1000, tzinfo=UTC)
    return format_time(moment)


def _utf16_strings(raw: bytes) -> list[str]:
    """A UTF-16 string array (NUL-terminated strings back to back)."""
    text = raw.decode("utf-16-le", errors="replace")
    if text.endswith("\x00"):
        text = text[:-1]
    return text.split("\x00") if text else []


def _guid(raw: bytes) -> str:
    return str(uuid.UUID(bytes_le=raw[:16])).upper()


# BinXML value type -> Rust-style text of the raw value bytes. Arrays (0x80 | type) are lists.
_SCALAR: dict[int, object] = {
    0x01: lambda raw: raw.decode("utf-16-le", errors="replace").rstrip("\x00"),
    0x02: lambda raw: raw.decode("cp1252", errors="replace").rstrip("\x00"),
    0x03: lambda raw: str(struct.unpack("<b", raw[:1])[0]),
    0x04: lambda raw: str(raw[0]),
    0x05: lambda raw: str(struct.unpack("<h", raw[:2])[0]),
    0x06: lambda raw: str(struct.unpack("<H", raw[:2])[0]),
    0x07: lambda raw: str(struct.unpack("<i", raw[:4])[0]),
    0x08: lambda raw: str(struct.unpack("<I", raw[:4])[0]),
    0x09: lambda raw: str(struct.unpack("<q", raw[:8])[0]),
    0x0A: lambda raw: str(struct.unpack("<Q", raw[:8])[0]),
    0x0B: lambda raw: repr(struct.unpack("<f", raw[:4])[0]),
    0x0C: lambda raw: repr(struct.unpack("<d", raw[:8])[0]),
    0x0D: lambda raw: "true" if struct.unpack("<I", raw[:4].ljust(4, b"\0"))[0] else "false",
    0x0E: lambda raw: raw.hex().upper(),
    0x0F: _guid,
    0x10: lambda raw: hex(int.from_bytes(raw, "little")),
    0x11: lambda raw: format_time(filetime_to_datetime(struct.unpack("<Q", raw[:8])[0])),
    0x12: _systemtime,
    0x14: lambda raw: hex(struct.unpack("<I", raw[:4])[0]),
    0x15: lambda raw: hex(struct.unpack("<Q", raw[:8])[0]),
}
_ITEM_SIZE = {0x03: 1, 0x04: 1, 0x05: 2, 0x06: 2, 0x07: 4, 0x08: 4, 0x09: 8, 0x0A: 8, 0x0B: 4, 0x0C: 8,
              0x0D: 4, 0x0F: 16, 0x10: 8, 0x11: 8, 0x12: 16, 0x14: 4, 0x15: 8}  # fmt: skip


def value_text(node: object, value_type: int) -> str | list[str] | None:
    """Text of one substitution value as the Rust parser renders it; None for NULL."""
    if value_type == 0x00:
        return None
    if value_type == 0x13:
        return node.string()  # type: ignore[attr-defined]  # SID: python-evtx formats it right
    raw = _raw(node)
    if value_type & 0x80:
        item = value_type & 0x7F
        if item == 0x01:
            return _utf16_strings(raw)
        size = _ITEM_SIZE.get(item)
        if size is None:
            raise ValueError(f"unsupported array type 0x{value_type:02x}")
        fmt = _SCALAR[item]
        return [fmt(raw[i : i + size]) for i in range(0, len(raw) - size + 1, size)]  # type: ignore[operator]
    fmt = _SCALAR.get(value_type)
    if fmt is None:
        raise ValueError(f"unsupported value type 0x{value_type:02x}")
    return fmt(raw)  # type: ignore[operator]


def _add_text(el: etree._Element, text: str) -> None:
    if not text:
        return
    text = xml_safe(text)
    if len(el):
        el[-1].tail = (el[-1].tail or "") + text
    else:
        el.text = (el.text or "") + text


def _literal(value: object) -> str:
    """Text of a literal value node; a UTF-16 string decoded here so that a lone surrogate shows as
    U+FFFD (python-evtx's own decoding raises on it)."""
    if isinstance(value, WstringTypeNode) and value._length is None:  # type: ignore[attr-defined]
        start = value.offset() + 2  # type: ignore[attr-defined]
        raw = bytes(value._buf[start : start + 2 * value.string_length()])  # type: ignore[attr-defined]
        return raw.decode("utf-16-le", errors="replace").rstrip("\x00")
    return value.string()  # type: ignore[attr-defined]


def _content_text(node: object) -> str:
    if isinstance(node, ValueNode):
        return _literal(node.children()[0])
    if isinstance(node, CharacterReferenceNode):
        return chr(node.entity())
    if isinstance(node, EntityReferenceNode):
        name = node.entity_reference()[1:-1]
        return _ENTITIES.get(name, f"&{name};")
    if isinstance(node, CDataSectionNode):
        return node.cdata()
    return ""


class _BoundedChunkHeader(ChunkHeader):
    """python-evtx's ChunkHeader with finite string and template chains.

    python-evtx loads a chunk's names and templates by following, from each bucket of the chunk
    header's two tables, the `next` offset stored in each node. A node whose `next` points back into
    its chain (4 damaged bytes) made that loop run forever. Here every chain stops at an offset already
    loaded or one outside the chunk; the nodes themselves are python-evtx's.
    """

    def _load_strings(self) -> None:
        if self._strings is None:
            self._strings = {}
        self._follow(STRING_TABLE, STRING_BUCKETS, 1, self.add_string)

    def _load_templates(self) -> None:
        if self._templates is None:
            self._templates = {}
        self._follow(TEMPLATE_TABLE, TEMPLATE_BUCKETS, 10, self._template_at)

    def _template_at(self, ofs: int) -> object | None:
        """The template at `ofs`, or None where no definition sits right behind a template instance
        token (python-evtx's check)."""
        if self.unpack_byte(ofs - 10) != 0x0C or self.unpack_dword(ofs - 4) != ofs:
            return None
        return self.add_template(ofs)

    def _follow(self, table: int, buckets: int, lowest: int, load: Callable[[int], object | None]) -> None:
        """Load every node of one chunk-header table's chains, each chain up to an offset already
        loaded, one outside [lowest, chunk size), or a node `load` refuses (None)."""
        seen: set[int] = set()
        for bucket in range(buckets):
            ofs = self.unpack_dword(table + bucket * 4)
            while lowest <= ofs < CHUNK_SIZE and ofs not in seen:
                seen.add(ofs)
                node = load(ofs)
                if node is None:
                    break
                ofs = node.next_offset()  # type: ignore[attr-defined]


class _Renderer:
    """Render one record's template tree into lxml elements, within a node count and a deadline."""

    def __init__(self, root_node: object, deadline: float) -> None:
        self.root_node = root_node
        self.deadline = deadline
        self.nodes = 0

    def render(self) -> etree._Element:
        holder = etree.Element("holder")
        self._template(self.root_node, holder)
        events = [c for c in holder if local(c.tag)]
        if not events:
            raise ValueError("empty template")
        return events[0]

    def _template(self, root_node: object, parent: etree._Element) -> None:
        subs = root_node.substitutions()  # type: ignore[attr-defined]
        for child in root_node.template().children():  # type: ignore[attr-defined]
            self._node(child, parent, subs)

    def _sub_value(self, node: object, subs: list[object]) -> tuple[object, str | list[str] | None]:
        sub = subs[node.index()]  # type: ignore[attr-defined]
        if isinstance(sub, BXmlTypeNode):
            return sub, None
        value_type = _value_type(sub)
        return sub, value_text(sub, value_type)

    def _attribute_value(self, node: object, subs: list[object]) -> str | None:
        if isinstance(node, NormalSubstitutionNode | ConditionalSubstitutionNode):
            _sub, value = self._sub_value(node, subs)
            if isinstance(value, list):
                return ",".join(value)
            if value is None and isinstance(node, ConditionalSubstitutionNode):
                return None
            return value or ""
        return _content_text(node)

    def _element(self, node: OpenStartElementNode, parent: etree._Element, subs: list[object]) -> None:
        el = etree.SubElement(parent, local(node.tag_name()) or "unnamed")
        for child in node.children():
            if isinstance(child, AttributeNode):
                name = child.attribute_name().string()
                if name.startswith("xmlns"):
                    continue
                value = self._attribute_value(child.attribute_value(), subs)
                if value is not None:
                    el.set(local(name), xml_safe(value))
        for child in node.children():
            if not isinstance(child, AttributeNode):
                self._node(child, el, subs)

    def _node(self, node: object, parent: etree._Element, subs: list[object]) -> None:
        self.nodes += 1
        if self.nodes > MAX_RENDERED_NODES:
            raise BoundExceeded(
                f"record expands past {MAX_RENDERED_NODES} nodes (BinXML values referenced many times)"
            )
        if not self.nodes % 1024 and time.thread_time() >= self.deadline:
            raise _time_bound()
        if isinstance(node, OpenStartElementNode):
            self._element(node, parent, subs)
        elif isinstance(node, NormalSubstitutionNode | ConditionalSubstitutionNode):
            sub, value = self._sub_value(node, subs)
            if isinstance(sub, BXmlTypeNode):
                self._template(sub.root(), parent)
            elif isinstance(value, list):
                _expand_array(parent, value)
            elif value is not None:
                _add_text(parent, value)
        else:
            _add_text(parent, _content_text(node))


def _expand_array(el: etree._Element, items: list[str]) -> None:
    """One element per array item, as the Rust parser renders `<Data>%n</Data>` with an array."""
    if not items:
        return
    _add_text(el, items[0])
    parent = el.getparent()
    if parent is None:
        return
    position = parent.index(el)
    for offset, item in enumerate(items[1:], start=1):
        copy = etree.Element(el.tag, dict(el.attrib))
        copy.text = xml_safe(item)
        parent.insert(position + offset, copy)


def _value_type(sub: object) -> int:
    """The substitution's declared value type (python-evtx keeps it only in the class)."""
    return _TYPE_OF_CLASS[type(sub).__name__]


_TYPE_OF_CLASS = {
    "NullTypeNode": 0x00, "WstringTypeNode": 0x01, "StringTypeNode": 0x02, "SignedByteTypeNode": 0x03,
    "UnsignedByteTypeNode": 0x04, "SignedWordTypeNode": 0x05, "UnsignedWordTypeNode": 0x06,
    "SignedDwordTypeNode": 0x07, "UnsignedDwordTypeNode": 0x08, "SignedQwordTypeNode": 0x09,
    "UnsignedQwordTypeNode": 0x0A, "FloatTypeNode": 0x0B, "DoubleTypeNode": 0x0C, "BooleanTypeNode": 0x0D,
    "BinaryTypeNode": 0x0E, "GuidTypeNode": 0x0F, "SizeTypeNode": 0x10, "FiletimeTypeNode": 0x11,
    "SystemtimeTypeNode": 0x12, "SIDTypeNode": 0x13, "Hex32TypeNode": 0x14, "Hex64TypeNode": 0x15,
    "BXmlTypeNode": 0x21, "WstringArrayTypeNode": 0x81,
}  # fmt: skip


def _time_bound() -> BoundExceeded:
    return BoundExceeded(f"chunk time bound reached ({CHUNK_CPU_SECONDS:g} s of CPU); record not read")


def parse_chunk(chunk_data: bytes, slots: list[RecordSlot]) -> Iterator[tuple[RecordSlot, dict | Exception]]:
    """(slot, record dict) for every slot python-evtx can read, (slot, exception) for the others."""
    header = _BoundedChunkHeader(chunk_data, 0)
    deadline = time.thread_time() + CHUNK_CPU_SECONDS
    for slot in slots:
        if time.thread_time() >= deadline:
            yield slot, _time_bound()
            continue
        try:
            record = Record(chunk_data, slot.offset, header)
            written = filetime_to_datetime(struct.unpack_from("<Q", chunk_data, slot.offset + 16)[0])
            event = _Renderer(record.root(), deadline).render()
            yield slot, element_to_record(event, written=written)
        except Exception as exc:  # noqa: BLE001 - python-evtx raises anything on damaged bytes
            yield slot, exc
