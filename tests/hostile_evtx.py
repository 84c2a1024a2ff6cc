"""Hostile one-chunk .evtx files (issue 15): each the smallest input that shows one way a parser can be
made to hang, blow up or lose text. Built from forged records with the forge's own BinXML writer, then
changed in the few bytes that matter (offsets per evtx-format.md)."""

from __future__ import annotations

import struct
from collections.abc import Callable
from datetime import UTC, datetime

from evtxcorr.forge import writer
from evtxcorr.forge.binxml import FRAGMENT_HEADER, Element, Sub, Template, Text, descriptor, template
from evtxcorr.forge.events import ForgedEvent
from evtxcorr.forge.structs import seal_chunk
from evtxcorr.parse.chunks import FILE_HEADER_SIZE, mini_file, walk_records

STRING_TABLE = 128  # chunk header: 64 string-chain heads, then 32 template-chain heads at 384
TEMPLATE_TABLE = 384
_COUNT = struct.Struct("<I").pack
_INSTANCE = struct.Struct("<BBII").pack
NULL_VALUE = descriptor(0, 0)
EVENT = ForgedEvent(
    time=datetime(2026, 1, 1, tzinfo=UTC), provider="P", event_id=1, channel="System", computer="HV01"
)


def _chunk(payload: Callable[[writer._Chunk], tuple[Template, bytes]], records: int = 2) -> writer._Chunk:
    """A chunk of `records` forged records whose EventData (template, values) `payload` gives."""
    chunk = writer._Chunk()
    original = writer.payload_part
    writer.payload_part = lambda _payload: payload(chunk)  # type: ignore[assignment]
    try:
        for number in range(1, records + 1):
            assert chunk.try_add(EVENT, number, number)
    finally:
        writer.payload_part = original  # type: ignore[assignment]
    return chunk


def binxml_bomb(references: int, depth: int) -> bytes:
    """Record 2's EventData is a template that references its one BinXML value `references` times,
    and that value is an instance of the same template, `depth` levels down: references**depth
    elements from a few hundred bytes. Record 1 defines the template (its value is NULL)."""
    tmpl = template(Element("EventData", children=(Sub(0, 0x21),) * references))

    def payload(chunk: writer._Chunk) -> tuple[Template, bytes]:
        if tmpl not in chunk.tables.templates:
            return tmpl, _COUNT(1) + NULL_VALUE
        instance = _INSTANCE(0x0C, 1, tmpl.id, chunk.tables.templates[tmpl])
        level = FRAGMENT_HEADER + instance + _COUNT(1) + NULL_VALUE + b"\0"
        for _ in range(depth - 1):
            level = FRAGMENT_HEADER + instance + _COUNT(1) + descriptor(len(level), 0x21) + level + b"\0"
        return tmpl, _COUNT(1) + descriptor(len(level), 0x21) + level

    return mini_file(_chunk(payload).seal())


def self_instancing_template() -> bytes:
    """A template definition holding an instance of itself (where its literal text was)."""
    tmpl = template(Element("EventData", children=(Text("A" * 10),)))
    chunk = _chunk(lambda _chunk: (tmpl, _COUNT(0)))
    data = bytearray(chunk.seal())
    text = b"\x05\x01" + struct.pack("<H", 10) + ("A" * 10).encode("utf-16-le")
    at = data.find(text)
    instance = _INSTANCE(0x0C, 1, tmpl.id, chunk.tables.templates[tmpl]) + _COUNT(0)
    shorter = b"\x05\x01" + struct.pack("<H", 3) + b"A\0A\0A\0"  # same length in all
    data[at : at + len(text)] = instance + shorter
    seal_chunk(data)
    return mini_file(bytes(data))


def invalid_utf16(*, in_template: bool) -> bytes:
    """Two records whose text holds a lone high surrogate (U+D800): in their one EventData string value
    ('ab', U+D800, 'cd'), or in literal text of the System template they share (Computer 'HV0', U+D800)."""
    data_template = template(Element("EventData", children=(Element("Data", children=(Sub(0, 0x01),)),)))
    value = "ab".encode("utf-16-le") + (b"\x00\xd8" if not in_template else b"") + "cd".encode("utf-16-le")
    chunk = bytearray(
        _chunk(lambda _chunk: (data_template, _COUNT(1) + descriptor(len(value), 0x01) + value)).seal()
    )
    if in_template:
        at = chunk.find("HV01".encode("utf-16-le"), 512)  # defined once, in the first record
        chunk[at + 6 : at + 8] = b"\x00\xd8"
    seal_chunk(chunk)
    return mini_file(bytes(chunk))


def looped_chain(data: bytes, table: int, length: int = 1) -> bytes:
    """`data` (a one-chunk file) with a loop in one of its string or template chains: the first chain's
    head pointing back at itself (`length` 1: the issue's case), or at the second chain's head, which
    points back at it (`length` 2: pyevtx-rs stops at the first form, not at this one). 4 or 8 bytes."""
    out = bytearray(data)
    base = FILE_HEADER_SIZE
    buckets = 64 if table == STRING_TABLE else 32
    heads = [offset for offset in struct.unpack_from(f"<{buckets}I", out, base + table) if offset]
    loop = heads[:length]
    assert len(loop) == length, "not enough chains in this chunk"
    for node, following in zip(loop, loop[1:] + loop[:1], strict=True):
        struct.pack_into("<I", out, base + node, following)
    return bytes(out)


def damaged_tail(data: bytes, record: int = -1, size: int = 36) -> bytes:
    """`data` with the last `size` bytes before the size copy of one record overwritten with 0xFF."""
    out = bytearray(data)
    slot = walk_records(bytes(out[FILE_HEADER_SIZE:]))[record]
    end = FILE_HEADER_SIZE + slot.offset + slot.size - 4
    out[end - size : end] = b"\xff" * size
    return bytes(out)
